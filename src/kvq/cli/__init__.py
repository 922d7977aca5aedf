"""The ``kvq`` console command: one module per sub-command."""
