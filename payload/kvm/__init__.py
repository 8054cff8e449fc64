"""Userspace KVM access: ioctl encoding, uAPI bindings and a minimal VMM."""
