"""The ``neurofuzz`` subcommands, by concern; :mod:`neurofuzz.fuzzer.cli` registers them.

Each command is a pair ``add_args(parser)`` / ``run(args) -> exit status``:

* :mod:`~neurofuzz.fuzzer.commands.campaign`: ``demo``, ``fuzz``, ``status``
* :mod:`~neurofuzz.fuzzer.commands.corpus`: ``export``, ``replay``
* :mod:`~neurofuzz.fuzzer.commands.tools`: ``coverage``, ``profile``, ``evaluate``, ``mutators``
* :mod:`~neurofuzz.fuzzer.commands.report`: ``report``, ``triage``
* :mod:`~neurofuzz.fuzzer.commands.assets`: ``faults``, ``encrypt``, ``decrypt``, ``obfuscate``
* :mod:`~neurofuzz.fuzzer.commands.privacy`: ``privacy``
* :mod:`~neurofuzz.fuzzer.commands.options`: option groups and checks the commands share

The modules import the library lazily, inside ``run``, so ``neurofuzz --help`` starts fast.
"""
