package consensus

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/shoal-org/shoal/api"
)

// SnapshotVersion is the layout version of the snapshot JSON; Restore and
// backup files (consensus/snapshotfile) refuse any other.
const SnapshotVersion = 1

// SnapshotData is the whole store as one JSON document: what WriteSnapshot
// writes and Restore reads. consensus/snapshotfile wraps it in backup files
// and merges one into a running cluster's state (PlanRestore).
type SnapshotData struct {
	Version  int             `json:"version"`
	Index    uint64          `json:"index"`
	Cluster  *ClusterState   `json:"cluster,omitempty"`
	Nodes    []*api.Node     `json:"nodes"`
	Services []*api.Service  `json:"services"`
	Tasks    []*api.Task     `json:"tasks"`
	Images   []*api.Image    `json:"images"`
	Networks []*api.Network  `json:"networks,omitempty"`
	Secrets  []*Secret       `json:"secrets,omitempty"`
	Configs  []*ConfigObject `json:"configs,omitempty"`
}

// WriteSnapshot writes the whole store as one JSON document.
func WriteSnapshot(s *Store, out io.Writer) error {
	tx := s.txn()
	data := SnapshotData{
		Version:  SnapshotVersion,
		Index:    s.Index(),
		Cluster:  getCluster(tx),
		Nodes:    collect(tx, TableNodes, IndexID, func(n *api.Node) *api.Node { return n }),
		Services: collect(tx, TableServices, IndexID, func(n *api.Service) *api.Service { return n }),
		Tasks:    collect(tx, TableTasks, IndexID, func(n *api.Task) *api.Task { return n }),
		Images:   collect(tx, TableImages, IndexID, func(n *api.Image) *api.Image { return n }),
		Secrets:  collect(tx, TableSecrets, IndexID, func(n *Secret) *Secret { return n }),
		Configs:  collect(tx, TableConfigs, IndexID, func(n *ConfigObject) *ConfigObject { return n }),
		Networks: collect(tx, TableNetworks, IndexID, func(n *api.Network) *api.Network { return n }),
	}
	if err := json.NewEncoder(out).Encode(&data); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	return nil
}

// Restore replaces the whole store atomically with a document WriteSnapshot
// wrote and notifies subscribers. The FSM's Restore (raft's snapshot
// install) calls it; nothing is changed when the document is refused.
func (s *Store) Restore(r io.Reader) error {
	var data SnapshotData
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if data.Version != SnapshotVersion {
		return fmt.Errorf("snapshot version %d: %w", data.Version, ErrMalformed)
	}
	db := newMemDB()
	tx := db.Txn(true)
	insert := func(table string, obj any) error {
		if err := tx.Insert(table, obj); err != nil {
			tx.Abort()
			return fmt.Errorf("restore %s: %w", table, err)
		}
		return nil
	}
	if data.Cluster != nil {
		if err := insert(tableCluster, &clusterRow{ID: clusterRowID, State: data.Cluster}); err != nil {
			return err
		}
	}
	// In order, stopping at the first failure: the transaction is aborted.
	for _, step := range []func() error{
		func() error { return insertAll(insert, TableNodes, data.Nodes) },
		func() error { return insertAll(insert, TableServices, data.Services) },
		func() error { return insertAll(insert, TableTasks, data.Tasks) },
		func() error { return insertAll(insert, TableImages, data.Images) },
		func() error { return insertAll(insert, TableSecrets, data.Secrets) },
		func() error { return insertAll(insert, TableConfigs, data.Configs) },
		func() error { return insertAll(insert, TableNetworks, data.Networks) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	tx.Commit()
	s.db.Store(db)
	s.notify(data.Index)
	return nil
}

// insertAll restores the non-nil rows of one table; it stops at the first
// failure (insert has aborted the transaction by then).
func insertAll[T any](insert func(table string, obj any) error, table string, rows []*T) error {
	for _, r := range rows {
		if r == nil {
			continue
		}
		if err := insert(table, r); err != nil {
			return err
		}
	}
	return nil
}
