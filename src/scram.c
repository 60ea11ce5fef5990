/* scram.c - placeholder until implemented. */
