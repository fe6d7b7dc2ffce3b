// Types of the SCWS JavaScript client.
