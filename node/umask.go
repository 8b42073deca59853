package node

import "syscall"

// umask sets the process umask and returns the previous one; the API socket
// is created with 0600 so no other user ever sees it writable.
func umask(mask int) int { return syscall.Umask(mask) }
