"""Model definitions, one module per model family. Importing this package imports every module
in it, and each module registers its entries with :func:`zoo.register`."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
