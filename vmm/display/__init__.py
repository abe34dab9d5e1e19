"""Host-side display backends of the VM process: image encoding for screenshots and the remote display."""
