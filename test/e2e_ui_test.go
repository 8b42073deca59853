package test

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// uiPort is the dashboard's port inside host 1's namespace.
const uiPort = "8080"

// jsErrors collects what the page reports as an error: uncaught
// exceptions, console.error, and browser log entries of level error
// (failed requests, CSP violations).
type jsErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (e *jsErrors) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, s)
}

func (e *jsErrors) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.msgs...)
}

// screenshotDir is where the dashboard's screenshot is kept: the test's
// artifact dir under `go test -artifacts`, else a directory under /tmp that
// outlives the test (logged).
func screenshotDir(t *testing.T) string {
	if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-ui-%s-%s", t.Name(), time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUIDashboard runs the dashboard on host 1 of a 3-node cluster, bound
// to the host's (non-loopback) address with a UI token, and drives it from
// headless Chromium in the root namespace: the token form, three nodes,
// a service's tasks appearing live after pressing Scale, a drain, no
// JavaScript errors, and a screenshot.
func TestUIDashboard(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs it)")
	}
	c := harness.New(t, 3)
	h1 := c.Host(1)
	uiAddr := net.JoinHostPort(h1.IP, uiPort)

	// A non-loopback address without a token is refused at start.
	err = h1.Start("--ui-addr", uiAddr)
	if err == nil || !strings.Contains(err.Error(), "needs a UI token") {
		t.Fatalf("agent with --ui-addr %s and no UI token: %v; want a refusal naming the token", uiAddr, err)
	}
	tok := strings.TrimSpace(h1.MustCLI(t, "ui", "token", "--data-dir", h1.DataDir))
	if !strings.HasPrefix(tok, "SHOALUI-") {
		t.Fatalf("ui token printed %q", tok)
	}
	if again := strings.TrimSpace(h1.MustCLI(t, "ui", "token", "--data-dir", h1.DataDir)); again != tok {
		t.Fatalf("second `ui token` printed %q, want the same token", again)
	}
	h1.MustStart(t, "--ui-addr", uiAddr)
	c.Form(t)
	// From the network: the page is public, the API needs the token, a
	// write also the CSRF header.
	for _, tc := range []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{"GET", "/", nil, http.StatusOK},
		{"GET", "/ui/v1/state", nil, http.StatusUnauthorized},
		{"GET", "/ui/v1/state", map[string]string{"X-Shoal-UI-Token": tok + "x"}, http.StatusUnauthorized},
		{"GET", "/ui/v1/state", map[string]string{"X-Shoal-UI-Token": tok}, http.StatusOK},
		{"POST", "/ui/v1/services/web/scale", map[string]string{"X-Shoal-UI-Token": tok}, http.StatusForbidden},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+uiAddr+tc.path, strings.NewReader(`{"replicas":2}`))
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Fatalf("%s %s with %d headers: %d, want %d", tc.method, tc.path, len(tc.hdr), res.StatusCode, tc.want)
		}
	}
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	h2 := c.Host(2)
	h2.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "1", "bb:1", "sleep", "100000")

	ctx := harness.Context(t, 5*time.Minute)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root
		chromedp.DisableGPU,
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	var errs jsErrors
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf), chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			errs.add(fmt.Sprintf("exception: %s at %s:%d", msg, d.URL, d.LineNumber))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				errs.add("console.error: " + strings.Join(parts, " "))
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				errs.add(fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}))
	defer cancelBrowser()

	// On failure: what the page showed, and what it complained about.
	defer func() {
		if !t.Failed() {
			return
		}
		t.Logf("JavaScript errors: %q", errs.list())
		if text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`)); err == nil {
			t.Logf("page text:\n%s", text)
		}
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			shot := filepath.Join(screenshotDir(t), "dashboard-failed.png")
			if os.WriteFile(shot, png, 0o644) == nil {
				t.Logf("screenshot of the failure: %s", shot)
			}
		}
	}()

	url := "http://" + uiAddr + "/"
	// The page asks for the token once.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SendKeys(chromedp.CSS("#token"), tok),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
	); err != nil {
		t.Fatalf("open %s and enter the token: %v", url, err)
	}

	// dom evaluates a JavaScript expression yielding a number.
	dom := func(expr string) (int, error) {
		return chromedp.Run(bctx, chromedp.Evaluate[int](expr))
	}
	waitDOM := func(what, expr string, want int) {
		t.Helper()
		harness.Eventually(t, 90*time.Second, func() (bool, string) {
			n, err := dom(expr)
			if err != nil {
				return false, err.Error()
			}
			return n == want, fmt.Sprintf("%s: %d, want %d", what, n, want)
		}, what)
	}
	const runningWeb = `document.querySelectorAll('.service[data-name="web"] li.task[data-state="running"]').length`
	waitDOM("ready nodes on the page", `document.querySelectorAll('#nodes tr.node[data-status="ready"]').length`, 3)
	waitDOM("running web tasks", runningWeb, 1)

	// Press Scale: 4 replicas. The new tasks must appear without a reload.
	if err := chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS(`.service[data-name="web"] input.replicas`), "4"),
		chromedp.Click(chromedp.CSS(`.service[data-name="web"] button.scale-set`)),
	); err != nil {
		t.Fatalf("press scale: %v", err)
	}
	waitDOM("running web tasks after scale", runningWeb, 4)
	waitDOM("nodes with a web task", `document.querySelectorAll('.service[data-name="web"] .node-tasks').length`, 3)
	// The write went through the cluster, as `service scale` would.
	var svcs []api.Service
	if err := c.Host(3).JSON(&svcs, "service", "ls"); err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].Replicas != 4 {
		t.Fatalf("service ls on h3 after the page's scale: %+v", svcs)
	}

	// Drain host 3 from the page: its tasks move, the row says drain.
	h3id := c.Host(3).NodeID(t)
	drainBtn := fmt.Sprintf(`#nodes tr.node[data-id="%s"] button.drain`, h3id)
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(drainBtn))); err != nil {
		t.Fatalf("press drain: %v", err)
	}
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		n, err := c.Host(2).Node(h3id)
		return err == nil && n.Availability == api.AvailabilityDrain, fmt.Sprintf("h3 availability %q (%v)", n.Availability, err)
	}, "h3 drained through the page")
	waitDOM("drained row", fmt.Sprintf(`document.querySelectorAll('#nodes tr.node[data-id="%s"][data-availability="drain"]').length`, h3id), 1)
	waitDOM("web tasks on h3", fmt.Sprintf(`document.querySelectorAll('.service[data-name="web"] .node-tasks[data-node="%s"] li.task').length`, h3id), 0)
	waitDOM("running web tasks after drain", runningWeb, 4)

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(screenshotDir(t), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	if e := errs.list(); len(e) != 0 {
		t.Fatalf("%d JavaScript errors:\n%s", len(e), strings.Join(e, "\n"))
	}
}
