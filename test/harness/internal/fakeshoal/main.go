// Command fakeshoal stands in for the shoal binary in the harness's own
// tests, so the namespace, link, kill and partition plumbing is verified
// without a working agent.
//
//	fakeshoal agent --data-dir D --advertise-addr IP --socket S
//	    keeps a node ID in D, accepts TCP on IP:2377 and serves on S:
//	    GET /v1/status (api.Status) and GET /probe?addr=HOST:PORT, which
//	    dials addr from inside the agent's network namespace.
//	fakeshoal --host unix://S status --format json
//	fakeshoal --host unix://S probe HOST:PORT   (exit 1 when unreachable)
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "agent" {
		if err := agent(args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "fakeshoal agent:", err)
			os.Exit(1)
		}
		return
	}
	if err := cli(args); err != nil {
		fmt.Fprintln(os.Stderr, "fakeshoal:", err)
		os.Exit(1)
	}
}

func agent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "")
	addr := fs.String("advertise-addr", "", "")
	sock := fs.String("socket", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	idPath := filepath.Join(*dataDir, "node-id")
	id, err := os.ReadFile(idPath)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = []byte(hex.EncodeToString(b))
		err = os.WriteFile(idPath, id, 0o600)
	}
	if err != nil {
		return fmt.Errorf("node id: %w", err)
	}
	tcp, err := net.Listen("tcp", net.JoinHostPort(*addr, "2377"))
	if err != nil {
		return fmt.Errorf("listen tcp: %w", err)
	}
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_ = os.Remove(*sock)
	ln, err := net.Listen("unix", *sock)
	if err != nil {
		return fmt.Errorf("listen unix: %w", err)
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.Status{NodeID: string(id), Hostname: host, Addr: *addr})
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
	})
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Println("fakeshoal agent listening", *addr, *sock)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func cli(args []string) error {
	if len(args) < 3 || args[0] != "--host" {
		return fmt.Errorf("usage: --host unix://SOCK status|probe ...")
	}
	sock := strings.TrimPrefix(args[1], "unix://")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var url string
	switch args[2] {
	case "status":
		url = "http://shoal/v1/status"
	case "probe":
		url = "http://shoal/probe?addr=" + args[len(args)-1]
	default:
		return fmt.Errorf("unknown command %q", args[2])
	}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = os.Stdout.Write(body)
	return err
}
