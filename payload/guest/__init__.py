"""Guest side: the real-mode x86 emitter and the L2 guest programs."""
