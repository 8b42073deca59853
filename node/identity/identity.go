// Package identity is what makes a node the same node across restarts:
// its node ID, drawn once and kept in DATA/node.json with its hostname,
// and the random IDs the agent draws for clusters and objects.
package identity

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-org/shoal/api/atomicfile"
)

// File holds a node's identity in its data dir.
const File = "node.json"

// Node is what makes a node the same node across restarts.
type Node struct {
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
}

// LoadOrCreate returns the identity kept in dir, creating it with a new
// node ID when there is none. A hostname other than the kept one (not
// empty) replaces it; the node ID never changes. A corrupt file is an
// error and is left for a human to look at, not replaced.
func LoadOrCreate(dir, hostname string) (Node, error) {
	p := filepath.Join(dir, File)
	var id Node
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &id); err != nil {
			return id, fmt.Errorf("corrupt node identity %s: %w", p, err)
		}
		if id.NodeID == "" {
			return id, fmt.Errorf("corrupt node identity %s: missing node_id", p)
		}
		if hostname != "" && hostname != id.Hostname {
			id.Hostname = hostname
			if err := atomicfile.WriteJSON(p, id); err != nil {
				return id, err
			}
		}
		return id, nil
	case errors.Is(err, os.ErrNotExist):
		id = Node{NodeID: NewID(), Hostname: hostname}
		return id, atomicfile.WriteJSON(p, id)
	default:
		return id, fmt.Errorf("read node identity: %w", err)
	}
}

// NewID returns a random 26-character lowercase ID (128 bits).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
