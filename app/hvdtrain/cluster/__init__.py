"""Where the job runs: the MPI world and launcher facts, threads per rank, the TensorFlow runtime
and Horovod start-up, the heartbeat watchdog and network beat that name a stalled rank or host, and
the fault injection the tests use."""
