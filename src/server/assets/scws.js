// The SCWS JavaScript client (filled in by the client work).
