"""Zero-shot prompts: the ``evaluation.prompts`` schema and the defaults for CheXpert's 14 labels.

A prompt set is what a report would say when a pathology is present (``positive``) and when it is
absent (``negative``). The ``zeroshot`` protocol scores every test image against every prompt with the
objective's ``text_scores`` and compares the mean score of the positive prompts with that of the
negative ones (docs/evaluation.md).

The defaults below are written in report language, the phrasing of MIMIC-CXR-style findings and
impressions (and of the synthetic reports), not class names: a model pretrained on reports has seen
"no pleural effusion", never "a photo of pleural effusion". Negatives are the negated mentions
radiologists write; CheXzero's own rule (Tiu et al., *Expert-level detection of pathologies from
unannotated chest X-ray images via self-supervised learning*, Nat. Biomed. Eng. 2022) uses the
template pair ``"{label}"`` / ``"no {label}"``, which the first prompt of most sets below follows.

``evaluation.prompts`` entries replace the default set of the pathology they name; pathologies not
listed keep their defaults. A pathology outside CheXpert's 14 has no default, so a recipe that scores
one with ``zeroshot`` must give its prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..data.labels import CHEXPERT_14
from ..errors import ConfigError, did_you_mean
from ..schema import option


@dataclass(frozen=True)
class PromptSet:
    """``{positive: [...], negative: [...]}`` of one pathology: at least one non-empty text each."""

    positive: tuple[str, ...] = option(help="what a report says when the pathology is present")
    negative: tuple[str, ...] = option(help="what a report says when it is absent")

    def __post_init__(self) -> None:
        for side in ("positive", "negative"):
            texts = getattr(self, side)
            if not texts:
                raise ConfigError(side, "needs at least one prompt")
            for i, text in enumerate(texts):
                if not text.strip():
                    raise ConfigError(f"{side}.{i}", "a prompt must be non-empty text")


def _set(positive: Sequence[str], negative: Sequence[str]) -> PromptSet:
    return PromptSet(tuple(positive), tuple(negative))


#: The default prompts of CheXpert's 14 observations (report language; see the module docstring).
DEFAULT_PROMPTS: dict[str, PromptSet] = {
    "No Finding": _set(
        ["no acute cardiopulmonary process", "the lungs are clear", "normal chest radiograph"],
        ["acute cardiopulmonary process", "abnormal chest radiograph"],
    ),
    "Enlarged Cardiomediastinum": _set(
        ["enlarged cardiomediastinum", "the cardiomediastinal silhouette is enlarged", "widened mediastinum"],
        ["no enlarged cardiomediastinum", "the mediastinal contours are normal"],
    ),
    "Cardiomegaly": _set(
        ["cardiomegaly", "the heart is enlarged", "enlarged cardiac silhouette"],
        ["no cardiomegaly", "heart size is normal"],
    ),
    "Lung Opacity": _set(
        ["lung opacity", "there is an opacity in the lung", "airspace opacity"],
        ["no lung opacity", "the lungs are clear"],
    ),
    "Lung Lesion": _set(
        ["lung lesion", "there is a pulmonary nodule", "pulmonary mass"],
        ["no lung lesion", "no pulmonary nodules or masses"],
    ),
    "Edema": _set(
        ["pulmonary edema", "there is interstitial edema", "vascular congestion with edema"],
        ["no pulmonary edema", "no vascular congestion"],
    ),
    "Consolidation": _set(
        ["consolidation", "there is focal consolidation", "airspace consolidation"],
        ["no consolidation", "no focal consolidation"],
    ),
    "Pneumonia": _set(
        ["pneumonia", "findings consistent with pneumonia", "there is a pneumonia"],
        ["no pneumonia", "no evidence of pneumonia"],
    ),
    "Atelectasis": _set(
        ["atelectasis", "bibasilar atelectasis", "there is atelectasis at the lung base"],
        ["no atelectasis", "there is no atelectasis"],
    ),
    "Pneumothorax": _set(
        ["pneumothorax", "there is a pneumothorax", "small apical pneumothorax"],
        ["no pneumothorax", "there is no pneumothorax"],
    ),
    "Pleural Effusion": _set(
        ["pleural effusion", "there is a pleural effusion", "moderate pleural effusion"],
        ["no pleural effusion", "there is no pleural effusion"],
    ),
    "Pleural Other": _set(
        ["pleural thickening", "pleural plaques", "pleural scarring"],
        ["no pleural thickening", "no pleural abnormality"],
    ),
    "Fracture": _set(
        ["fracture", "there is a rib fracture", "acute fracture"],
        ["no fracture", "no acute osseous abnormality"],
    ),
    "Support Devices": _set(
        ["support devices", "endotracheal tube in place", "central venous catheter with tip in the svc"],
        ["no support devices", "no lines or tubes"],
    ),
}
assert set(DEFAULT_PROMPTS) == set(CHEXPERT_14)


def merged_prompts(prompts: Mapping[str, PromptSet] | None) -> dict[str, PromptSet]:
    """The defaults with the recipe's ``evaluation.prompts`` entries replacing theirs (sorted by name)."""
    merged = {**DEFAULT_PROMPTS, **(prompts or {})}
    return dict(sorted(merged.items()))


def check_prompts(
    prompts: Mapping[str, PromptSet] | None, pathologies: Sequence[str], needed: bool, where: str
) -> None:
    """Refuse, before any work, prompts for an unknown pathology and (when ``needed``: a listed
    protocol uses prompts) a scored pathology without any prompts."""
    known = set(pathologies) | set(CHEXPERT_14)
    for name in prompts or {}:
        if name not in known:
            raise ConfigError(
                f"{where}.{name}",
                f"not a scored pathology nor a CheXpert label{did_you_mean(name, sorted(known))}",
            )
    if needed:
        merged = merged_prompts(prompts)
        missing = [p for p in pathologies if p not in merged]
        if missing:
            raise ConfigError(
                where,
                f"no zero-shot prompts for {', '.join(missing)} (only CheXpert's 14 labels have defaults); "
                f"add {{{missing[0]}: {{positive: [...], negative: [...]}}}}",
            )
