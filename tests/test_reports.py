"""Report sections, placeholder normalisation and prior-study sentences on MIMIC and OpenI styles."""

from __future__ import annotations

import pytest

from radtex_bench.data.reports import drop_prior_sentences, extract, normalise, sections

MIMIC = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.  Heart size: normal.
 The cardiomediastinal silhouette is unchanged compared to the prior.

 IMPRESSION:

 1. No acute cardiopulmonary process. 2. Interval resolution of the left effusion.

 NOTIFICATION:  The findings were discussed with Dr. ___ at 4:41 PM.
"""
OPENI = (
    "COMPARISON: None.\nINDICATION: XXXX-year-old male, XXXX.\n"
    "FINDINGS: The heart is normal in size. There are no XXXX of a pleural effusion.\n"
    "IMPRESSION: Normal chest x-XXXX."
)


def test_mimic_sections():
    parts = sections(MIMIC)
    assert {
        "EXAMINATION",
        "INDICATION",
        "TECHNIQUE",
        "COMPARISON",
        "FINDINGS",
        "IMPRESSION",
        "NOTIFICATION",
    } <= set(parts)
    findings = extract(MIMIC, "findings")
    assert findings.startswith("There is no focal consolidation") and findings.endswith(
        "compared to the prior."
    )
    assert "Heart size: normal." in findings  # a mixed-case "word:" inside the text is not a header
    assert extract(MIMIC, "impression") == (
        "1. No acute cardiopulmonary process. 2. Interval resolution of the left effusion."
    )
    both = extract(MIMIC, "both")
    assert both.startswith("FINDINGS: There is no") and " IMPRESSION: 1. No acute" in both
    assert "ascites" not in both and "discussed" not in both
    full = extract(MIMIC, "full")
    assert full.startswith("FINAL REPORT EXAMINATION: CHEST (PA AND LAT) INDICATION: F with new onset")
    assert "\n" not in full and "  " not in full and "___" not in full


def test_openi_sections_and_placeholders():
    assert extract(OPENI, "both") == (
        "FINDINGS: The heart is normal in size. There are no of a pleural "
        "effusion. IMPRESSION: Normal chest x-ray."
    )
    assert extract(OPENI, "impression") == "Normal chest x-ray."
    assert extract(OPENI, "full").startswith("COMPARISON: None. INDICATION: year-old male.")


def test_combined_flattened_and_headerless_reports():
    combined = " FINAL REPORT\n INDICATION: cough\n FINDINGS AND IMPRESSION:\n Lungs are clear.\n"
    assert extract(combined, "findings") == extract(combined, "impression") == "Lungs are clear."
    assert extract(combined, "both") == "FINDINGS: Lungs are clear."
    assert extract("FINDINGS: image 1 of p0. IMPRESSION: nothing acute.", "impression") == "nothing acute."
    headerless = (
        " FINAL REPORT\n INDICATION: fever\n PA AND LATERAL VIEWS OF THE CHEST:\n The lungs are clear.\n"
    )
    assert extract(headerless, "both") == "The lungs are clear."
    assert extract("The lungs are clear.", "both") == "The lungs are clear."
    assert extract(headerless, "findings") == ""  # asked for a section the report lacks
    assert extract("", "both") == ""
    assert extract("Findings: lowercase header.\nImpression: ok.", "impression") == "ok."
    with pytest.raises(ValueError):
        extract("x", "summary")


def test_drop_prior_sentences():
    text = (
        "Heart size is normal. The effusion is unchanged. Interval placement of a line. Compared to the prior "
        "study, no change. Stable cardiomegaly. No pneumothorax."
    )
    assert drop_prior_sentences(text) == "Heart size is normal. No pneumothorax."
    assert extract(MIMIC, "both", drop_prior=True) == (
        "FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities "
        "that most likely represent nipple shadows. Heart size: normal. IMPRESSION: 1. No acute cardiopulmonary "
        "process."
    )
    assert extract("FINDINGS: Unchanged. IMPRESSION: Stable.", "both", drop_prior=True) == ""


def test_normalise():
    assert normalise("  Dr. ___ was   paged\n at ___ .  XXXX-year-old  ") == "Dr. was paged at. year-old"
    assert normalise("No acute abnormality.. Wait...") == "No acute abnormality. Wait..."
    assert normalise("Old style [**Hospital 123**] text") == "Old style text"
    assert normalise("x-XXXX shows") == "x-ray shows"
