"""torch.hub entry points: every zoo entry by name.

    >>> import torch
    >>> net = torch.hub.load("path/to/clone", "sentiment-sst/gru", source="local")
    >>> rand = torch.hub.load("path/to/clone", "random-net/tanh", source="local", depth=10, seed=1)

``torch.hub.list`` shows the names. Keyword arguments are the entry's builder overrides, as in
``zoo.load``; ``pretrained=False`` gives fresh weights. Weights load from the verified HDF5
files, never by unpickling.
"""

dependencies = ["torch", "h5py", "numpy", "scipy", "lightning"]


def _entry_loader(name):
    def load(pretrained=True, **overrides):
        import zoo

        return zoo.load(name, pretrained=pretrained, **overrides)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = f"zoo.load({name!r}, pretrained=True, **overrides)"
    return load


def __getattr__(name):  # torch.hub looks entries up with getattr(hubconf, name)
    import zoo

    if name.startswith("__"):
        raise AttributeError(name)
    zoo.get_entry(name)  # an unknown name raises, listing the closest ones
    return _entry_loader(name)


def __dir__():
    import zoo

    return ["dependencies", *zoo.list_models()]
