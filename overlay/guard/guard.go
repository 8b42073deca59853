// Package guard binds each container port of an overlay's bridge to its
// container's MAC and address, so that a container with CAP_NET_RAW cannot
// forge ARP or another container's source (ruleset.go says why the table
// looks the way it does; README.md). It is apart from the overlay because
// the table is a rule set of its own with a pure compile half that is
// traced frame by frame, and because it needs nothing of the overlay but
// the list of ports.
package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config says which table a Table keeps and what it holds.
type Config struct {
	// Bridge names the table (TableName); one table per overlay.
	Bridge string
	// NetNS is the namespace to program; netns.None() (not the zero value)
	// for the caller's own. The caller keeps it open while the Table is
	// used.
	NetNS netns.NsHandle
	// Ports lists the ports the table must hold when it is rebuilt. Sync
	// and an Add that rebuilds call it on the caller's goroutine with the
	// Table's lock held, so an element update (Add, Remove) cannot slip
	// between the listing and the rebuild: a port the list missed has its
	// elements added after the rebuild.
	Ports func() ([]Port, error)
	// Logger receives the rebuild that follows a failed Add.
	Logger *slog.Logger
}

// Table is the guard table of one bridge. Its methods are safe for
// concurrent use: their transactions are ordered by one lock, so Attach
// and Detach of different containers (which the overlay runs in parallel)
// never interleave an element update with Setup's rebuild.
type Table struct {
	cfg Config
	mu  sync.Mutex
}

// New returns the Table of cfg.Bridge. It touches nothing in the kernel.
func New(cfg Config) *Table {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Table{cfg: cfg}
}

// Sync replaces the table with one holding Config.Ports, in one
// transaction: add (so the delete cannot fail on a fresh namespace),
// delete, add with everything in it. It also drops stale entries, and is
// how a table deleted underneath comes back.
func (t *Table) Sync() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ports, err := t.cfg.Ports()
	if err == nil {
		err = t.apply(compile(TableName(t.cfg.Bridge), ports))
	}
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	return nil
}

// Add lets port p carry frames from p.MAC and p.IP (and only those), in
// one transaction. Call it before the veth exists, so the first frame is
// checked. When the transaction fails (the table was deleted underneath)
// it rebuilds the whole table (Sync), which holds p once Config.Ports
// lists it.
func (t *Table) Add(p Port) error {
	err := t.elemsOp(p, true)
	if err == nil {
		return nil
	}
	t.cfg.Logger.Warn("overlay: guard entries not added; rebuilding the table", "device", p.IfName, "err", err)
	return t.Sync()
}

// Remove takes p's address entries off; the port stays in the ports set
// (fail closed) until the next Sync. Missing entries, or a missing table,
// are fine.
func (t *Table) Remove(p Port) error {
	err := t.elemsOp(p, false)
	if errors.Is(err, unix.ENOENT) {
		return nil // no table: nothing to remove
	}
	return err
}

// Delete deletes the table (the overlay's Teardown). A missing table is
// fine.
func (t *Table) Delete() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn()
	if err != nil {
		return err
	}
	tbl, _, _, _ := sets(TableName(t.cfg.Bridge))
	c.AddTable(tbl)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table bridge %s: %w", tbl.Name, err)
	}
	return nil
}

// Intact reports whether the table is in the kernel with its chains and
// sets: someone else's `nft flush ruleset` (an nftables service restart, a
// firewall reload) deletes it, and until it is made again no port of the
// bridge is checked. One netlink request, cheap enough for a loop's every
// pass.
func (t *Table) Intact() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn()
	if err != nil {
		return false, err
	}
	tbl, err := c.ListTableOfFamily(TableName(t.cfg.Bridge), nftables.TableFamilyBridge)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list nftables table bridge %s: %w", TableName(t.cfg.Bridge), err)
	}
	return tbl.Use > 0, nil
}

// conn opens an nftables connection in the programmed namespace.
func (t *Table) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if t.cfg.NetNS.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(t.cfg.NetNS)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

// apply replaces the table with rs in one transaction. t.mu must be held.
func (t *Table) apply(rs *ruleset) error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	c.AddTable(rs.table)
	c.DelTable(rs.table)
	c.AddTable(rs.table)
	c.AddChain(rs.hook)
	c.AddChain(rs.ports)
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{rs.portSet, rs.portElems}, {rs.ipSet, rs.ipElems}, {rs.arpSet, rs.arpElems}} {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
	}
	for _, r := range rs.rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table bridge %s: %w", rs.table.Name, err)
	}
	return nil
}

// elemsOp adds or removes the elements of one port in one transaction.
// Removal adds the address elements first (an existing element is no
// error without NLM_F_EXCL), so it succeeds whether they were there or
// not; it leaves the port's name in the ports set.
func (t *Table) elemsOp(p Port, add bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.conn()
	if err != nil {
		return err
	}
	name := TableName(t.cfg.Bridge)
	_, portSet, ipSet, arpSet := sets(name)
	pe, ie, ae := elems(p)
	op := "remove"
	if add {
		op = "add"
		if err := c.SetAddElements(portSet, []nftables.SetElement{pe}); err != nil {
			return err
		}
	}
	for _, s := range []struct {
		set *nftables.Set
		e   nftables.SetElement
	}{{ipSet, ie}, {arpSet, ae}} {
		if err := c.SetAddElements(s.set, []nftables.SetElement{s.e}); err != nil {
			return err
		}
		if !add {
			if err := c.SetDeleteElements(s.set, []nftables.SetElement{s.e}); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("guard: %s the entries of %s (%s) in table bridge %s: %w", op, p.IfName, p.IP, name, err)
	}
	return nil
}
