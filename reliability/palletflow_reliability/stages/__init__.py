"""The tests, one module per family. Each is a function `test_...(suite, test)` that injects
load, faults or bad input through the API, then checks through SQL and the API, printing its
figures with `test.figure` and its defects with `test.defect`; main.TESTS names them."""
