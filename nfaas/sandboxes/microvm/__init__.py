"""The microVM backend: functions in QEMU ``microvm`` guests (EVE025 clause 4.3, key issue #7.2).

``backend`` is the host side (sandboxes, the pool of restored VMs), ``qemu``
launches and drives QEMU, ``handshake`` takes a new VM to its agent's first
word, ``snapshot`` boots a template once and saves it, ``image`` builds the
guest's kernel and root filesystem from the distribution's packages, ``cpio``
writes initramfs archives, and ``agent`` runs inside the guest. This module
imports nothing, so the guest can import ``agent`` without the host's machinery.
"""
