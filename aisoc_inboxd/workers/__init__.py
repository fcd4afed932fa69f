"""
Worker processes: with C{workers: N} the daemon serves its HTTP and syslog sockets from N processes,
itself and N - 1 workers that inherit the listening sockets (the kernel hands each new connection
or datagram to one of them), so parsing and normalizing use every core.

The daemon (L{supervisor}) spawns, watches and stops the workers; each worker (L{main}) builds the
same intake on the inherited sockets with its own store connection and sink; L{control} is the
channel between them.
"""
