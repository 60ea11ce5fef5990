/* proto.c - placeholder until implemented. */
