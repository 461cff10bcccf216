"""One module per reproduced paper: its figures and headline numbers, as report sections
(:func:`zoo.report.register_section`). Importing this package imports every module in it."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
