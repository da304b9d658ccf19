"""The ``mercato`` command line: one module per noun; commands parse and delegate."""
