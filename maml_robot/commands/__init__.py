"""Sub-commands of the ``maml-robot`` command line, one module each."""
