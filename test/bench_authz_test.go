package test

// Benchmark of the cluster port under a flood of unauthenticated
// connections (issue 7): the agent's memory must stay bounded (goal: at most
// 50 MiB of growth) and its API must keep answering.

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

const (
	floodConns = 10000
	floodBatch = 500 // connections held open at once
)

// BenchmarkClusterPortFlood opens 10,000 connections to a node's 2377 from
// the root namespace, floodBatch at a time, each either idle or sending the
// first bytes of a TLS record and then stalling, and holds every batch open
// while it times `shoal node ls` and reads the agent's RSS.
func BenchmarkClusterPortFlood(b *testing.B) {
	c := harness.New(b, 1)
	c.Form(b)
	h := c.Host(1)
	harness.Consistently(b, 2*time.Second, c.ReadyCondition(1, h), "the node stays ready")
	nodeLs := func() time.Duration {
		start := time.Now()
		h.MustCLI(b, "node", "ls")
		return time.Since(start)
	}
	rss := func() float64 {
		kb, err := vmRSS(h.PID())
		if err != nil {
			b.Fatal(err)
		}
		return float64(kb) / 1024
	}
	b.ResetTimer()
	var before []time.Duration
	for i := 0; i < runs(b); i++ {
		before = append(before, nodeLs())
	}
	rssBefore := rss()

	var during []time.Duration
	rssPeak := rssBefore
	opened, failed := 0, 0
	for done := 0; done < floodConns; done += floodBatch {
		conns := make([]net.Conn, floodBatch)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64) // bounded concurrent dials
		for i := range conns {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				cn, err := net.DialTimeout("tcp", h.Addr(), 2*time.Second)
				if err != nil {
					return
				}
				if i%2 == 1 {
					// A TLS handshake record header announcing 16 KiB that never come.
					_, _ = cn.Write([]byte{0x16, 0x03, 0x01, 0x40, 0x00})
				}
				conns[i] = cn
			}()
		}
		wg.Wait()
		for _, cn := range conns {
			if cn == nil {
				failed++
			} else {
				opened++
			}
		}
		during = append(during, nodeLs())
		if r := rss(); r > rssPeak {
			rssPeak = r
		}
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
	}
	b.StopTimer()
	reportDurations(b, "node-ls-before", before)
	reportDurations(b, "node-ls-during-flood", during)
	b.ReportMetric(rssBefore, "MiB/rss-before")
	b.ReportMetric(rssPeak, "MiB/rss-peak-flood")
	b.ReportMetric(rssPeak-rssBefore, "MiB/rss-growth")
	printRow(b, "rss-under-flood", 1, fmt.Sprintf("%.1f MiB", rssPeak-rssBefore), fmt.Sprintf("%.1f MiB", rssBefore),
		fmt.Sprintf("%.1f MiB", rssPeak), fmt.Sprintf("growth; before and peak (goal ≤ 50 MiB growth); %d connections opened, %d dials failed", opened, failed))
}
