/* dns.c - placeholder until implemented. */
