package linkutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteSysctl sets /proc/sys/<key> (key with slashes) if it differs. The
// file shows the namespace of the calling thread, so for another one run
// it inside DoInNS.
func WriteSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	if cur, err := os.ReadFile(path); err == nil && string(trimNL(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// ReadSysctl reads /proc/sys/<key> of the calling thread's namespace,
// trimmed.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", err
	}
	return string(trimNL(b)), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
