"""``python -m bench``: run the benchmark, print one table, write bench/results.json."""

from bench.run import main

if __name__ == "__main__":
    main()
