"""First module the feature workers' fork server imports: Ctrl-C is the parent's to handle.

A terminal's Ctrl-C reaches every process of the group. The fork server, importing librosa for
seconds, and the workers forked from it printed a ``KeyboardInterrupt`` traceback each, while the
parent, which owns the interrupt, stops the run and says so. They ignore SIGINT from here on and
leave when the parent has gone (its pipe closes; see ``earmark.features._extract._exit_with``).
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
