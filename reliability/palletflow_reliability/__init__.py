"""PalletFlow reliability and security suite (issue #9), as a package (issue #22).

`reliability/run` is the command users and CI call; it puts reliability/ on sys.path and
calls `main.main()`. The modules, from the bottom up:

    support      output (say, fmt), the record of one test (Test), run, free_port, Failure
    client       HTTP to the daemon (Client, problem+json), the demo ecosystem (Ecosystem, Zipf)
    cluster      the daemon's embedded PostgreSQL, reached from outside (Cluster)
    daemon       the executables (build, Binaries) and palletflowd itself (Daemon)
    ledger       what write tests check afterwards: nothing lost, duplicated or half-applied
    stages/      the tests, one module per family
    main         the options, the tests' table, the loop and the summary

Python 3 standard library only; Schemathesis is run as a program (installed with pip when
missing), and PyYAML, which comes with it, reads the contract.
"""
