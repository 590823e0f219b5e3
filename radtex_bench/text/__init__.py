"""Report text: a locally trained tokenizer and small text towers."""
