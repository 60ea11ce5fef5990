/* authfile.c - placeholder until implemented. */
