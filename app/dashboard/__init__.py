"""The ops page: charts of throughput, outcomes, rejection reasons, durations, the queue and its workers."""
