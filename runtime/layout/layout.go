// Package layout says where a container's files are: what must outlive a
// reboot in its dir under the data dir (Root/containers/<id>: record,
// exit record, logs, the overlay's upper and work dirs), and its OCI
// bundle and other volatile files in its run dir (RunRoot/<id>, on tmpfs;
// its /etc files on a tmpfs of their own below it, WithEtcTmpfs),
// or, for a container of the old layout (no run dir in its record), all
// in its dir. Why two places: runtime/README.md, "Run dirs".
//
// It exists apart from the runtime because the layout is a pure function
// of a record's fields that never change (Root, ID, run dir), which every
// step of a container's life and every reader of its files derives the
// same way, and which is checked before anything is removed (ValidRunDir).
// It touches nothing on disk.
package layout

import (
	"path/filepath"
	"regexp"
)

// Paths are where a container's files are (For).
type Paths struct {
	// Under Root/containers/<id>/ (Dir), whatever the layout: what must
	// outlive a reboot (record, exit record, logs) and the overlay's
	// upper/ and work/ (the container's writes).
	Dir, Upper, Work, State, Log, Record string
	// Run is the run dir, "" for a container of the old layout, where
	// what follows is in Dir, but the netns in Root/netns/<id>.
	Run string
	// In the run dir: the OCI bundle (config.json, rootfs/ where the
	// overlay is mounted), the /etc files, runc's log and pid files, the
	// health probe's pid file, the netns bind mount.
	Bundle, Rootfs, Config, Hosts, Hostname, Resolv string
	InitLog, PidFile, HealthPid                     string
	Netns                                           string
	// Etc is the mount point of the small tmpfs that holds the /etc
	// files (Hosts, Hostname, Resolv), Run/etc, for a container whose
	// record says so (WithEtcTmpfs); "" where they are beside the bundle.
	Etc string
}

// For derives the paths of container id from root (the runtime's
// Config.Root) and its record's run dir. It touches nothing.
func For(root, id, runDir string) Paths {
	d := filepath.Join(root, "containers", id)
	p := Paths{
		Dir:    d,
		Upper:  filepath.Join(d, "upper"),
		Work:   filepath.Join(d, "work"),
		State:  filepath.Join(d, "state"),
		Log:    filepath.Join(d, "log"),
		Record: filepath.Join(d, "container.json"),
		Run:    runDir,
		Bundle: d,
		Netns:  filepath.Join(root, "netns", id),
	}
	if runDir != "" {
		p.Bundle = runDir
		p.Netns = filepath.Join(runDir, "netns")
	}
	b := p.Bundle
	p.Rootfs = filepath.Join(b, "rootfs") // BuildSpec's RootfsPath "rootfs"
	p.Config = filepath.Join(b, "config.json")
	p.Hosts = filepath.Join(b, "hosts")
	p.Hostname = filepath.Join(b, "hostname")
	p.Resolv = filepath.Join(b, "resolv.conf")
	p.InitLog = filepath.Join(b, "init.log")
	p.PidFile = filepath.Join(b, "init.pid")
	p.HealthPid = filepath.Join(b, "health.pid")
	return p
}

// WithEtcTmpfs returns p with the /etc files in Run/etc (Etc), the mount
// point of a tmpfs of their own, as containers made with a run dir since
// records say so (the runtime's record.EtcTmpfs): what a container writes
// to its /etc/hosts, /etc/hostname and /etc/resolv.conf is then bounded by
// that tmpfs instead of filling the run dir's file system. A container
// made before keeps its files beside its bundle, where its bundle config
// binds them from. For the old layout (no run dir) it returns p unchanged:
// the files stay in the container's dir under the data dir.
func (p Paths) WithEtcTmpfs() Paths {
	if p.Run == "" {
		return p
	}
	p.Etc = filepath.Join(p.Run, "etc")
	p.Hosts = filepath.Join(p.Etc, "hosts")
	p.Hostname = filepath.Join(p.Etc, "hostname")
	p.Resolv = filepath.Join(p.Etc, "resolv.conf")
	return p
}

// RunDirFor is the run dir a new container id gets: under runRoot when
// there is one and the supervisor can run a bundle kept apart from the
// container's dir (supclient.Client.TakesBundle), else none (the old
// layout, all in the container's dir).
func RunDirFor(runRoot, id string, supTakesBundle bool) string {
	if runRoot == "" || !supTakesBundle {
		return ""
	}
	return filepath.Join(runRoot, id)
}

// ValidRunDir reports whether runDir, read from the record of container
// id, is one RunDirFor could have made for it (an absolute, clean path
// ending in its ID), so that a damaged record cannot point Remove at
// another directory.
func ValidRunDir(runDir, id string) bool {
	d := runDir
	return d == "" || (filepath.IsAbs(d) && filepath.Clean(d) == d && filepath.Base(d) == id && ValidName(id))
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidName reports whether s may name a container (its ID, or a name a
// caller gave it): a letter or digit, then letters, digits, '_', '.' and
// '-'. An ID that passes is safe as one path component.
func ValidName(s string) bool { return nameRE.MatchString(s) }
