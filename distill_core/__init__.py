"""distill-lens core: fine-tune a BERT teacher, distil a DistilBERT student, write each run to artifacts/."""

__version__ = "0.1.0"
