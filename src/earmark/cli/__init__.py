"""The ``earmark`` command-line tool: one module per command group, composed in :mod:`.main`."""
