"""One module per paper: its pair builder, extra objective, evaluation protocol and experiment."""
