"""PyTorch interop: the official state_dict names as data and the weight import."""
