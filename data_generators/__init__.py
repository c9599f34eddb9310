"""Task sources for supervised MAML: each turns a random generator into task batches."""
