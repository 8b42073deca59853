package test

// The Debian package (make deb → scripts/build-deb.sh): what it holds, its
// control fields, and its systemd unit. Installing it is left to a fresh
// Debian machine (docs/upgrades.md): on a shared test host, `dpkg -i` would
// replace the machine's own state.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/test/harness"
)

// buildDeb builds the package from the binary under test.
func buildDeb(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (it is on every Debian host)")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatalf("shoal binary: %v", err)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", filepath.Join(root, "scripts", "build-deb.sh"), bin, "v1.2.3-4-gabc1234", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

func TestDebianPackage(t *testing.T) {
	deb := buildDeb(t)
	if base := filepath.Base(deb); !strings.HasPrefix(base, "shoal_1.2.3+4.gabc1234_") {
		t.Errorf("package file %s: want the Debian form of v1.2.3-4-gabc1234", base)
	}

	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	}
	files := map[string]string{} // path → mode and owner
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 {
			files[strings.TrimPrefix(f[len(f)-1], ".")] = f[0] + " " + f[1]
		}
	}
	for path, want := range map[string]string{
		"/usr/bin/shoal":                               "-rwxr-xr-x root/root",
		"/usr/lib/shoal/shoal-init":                    "-rwxr-xr-x root/root",
		"/usr/lib/shoal/shoal-supervisor":              "-rwxr-xr-x root/root",
		"/lib/systemd/system/shoal.service":            "-rw-r--r-- root/root",
		"/etc/shoal/agent.yaml":                        "-rw-r--r-- root/root",
		"/usr/share/man/man1/shoal.1.gz":               "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/shoal": "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_shoal":     "-rw-r--r-- root/root",
		"/usr/share/doc/shoal/upgrades.md":             "-rw-r--r-- root/root",
	} {
		if got, ok := files[path]; !ok || got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}

	info, err := exec.Command("dpkg-deb", "-I", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -I: %v", err)
	}
	for _, want := range []string{"Package: shoal", "Version: 1.2.3+4.gabc1234", "Depends: runc (>= 1.1), nftables\n",
		" conffiles", " postinst", " prerm", " postrm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	conff, err := exec.Command("dpkg-deb", "-I", deb, "conffiles").Output()
	if err != nil || strings.TrimSpace(string(conff)) != "/etc/shoal/agent.yaml" {
		t.Errorf("conffiles: %q %v", conff, err)
	}

	// The unpacked tree: the maintainer scripts parse, the packaged config
	// is accepted by the packaged binary, the unit has the keys that keep
	// containers alive and passes systemd-analyze.
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-R", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if out, err := exec.Command("sh", "-n", filepath.Join(x, "DEBIAN", s)).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
	checkPackagedConfig(t, filepath.Join(x, "usr/bin/shoal"), filepath.Join(x, "etc/shoal/agent.yaml"))
	unit := filepath.Join(x, "lib/systemd/system/shoal.service")
	checkUnitKeys(t, unit)
	verifyUnit(t, unit, filepath.Join(x, "usr/bin/shoal"))
}

// checkPackagedConfig runs the packaged binary's agent on the packaged
// config far enough to see the file accepted: the file is read first, then
// the flags are validated as a whole, where two equal ports stop it before
// anything starts.
func checkPackagedConfig(t *testing.T, bin, conf string) {
	t.Helper()
	out, err := exec.Command(bin, "agent", "--config", conf, "--gossip-port", "7000", "--cluster-port", "7000").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must differ") {
		t.Fatalf("want the agent past its config and stopped by the equal ports: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "agent config") {
		t.Fatalf("the packaged agent.yaml is refused by the packaged binary:\n%s", out)
	}
}

// unitKeys reads KEY=VALUE lines of a unit file, by section.
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, _ := strings.Cut(l, "=")
			keys[section+"."+k] = v
		}
	}
	return keys
}

func checkUnitKeys(t *testing.T, unit string) {
	t.Helper()
	keys := unitKeys(t, unit)
	for k, want := range map[string]string{
		"Unit.After":          "network-online.target nftables.service",
		"Unit.Wants":          "network-online.target",
		"Service.Type":        "notify",
		"Service.ExecStart":   "/usr/bin/shoal agent --config /etc/shoal/agent.yaml",
		"Service.Restart":     "on-failure",
		"Service.KillMode":    "process", // containers and their supervisor outlive the agent
		"Service.LimitNOFILE": "1048576",
		"Service.TasksMax":    "infinity",
		"Install.WantedBy":    "multi-user.target",
	} {
		if keys[k] != want {
			t.Errorf("%s: %s=%q, want %q", filepath.Base(unit), k, keys[k], want)
		}
	}
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// ExecStart points at the unpacked binary. verify exits 0 on unknown keys
// and bad values, so any output counts as a failure.
func verifyUnit(t *testing.T, unit, bin string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: unit keys checked in Go only")
		return
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "shoal.service")
	if err := os.WriteFile(cp, []byte(strings.ReplaceAll(string(b), "/usr/bin/shoal", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", cp).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
