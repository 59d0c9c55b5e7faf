// Command natscheck runs behavioural scenarios against a server that speaks the
// NATS client protocol (zmesh-server, or nats-server as the reference) through
// the standard Go NATS client, the way applications use it.
//
// Usage:
//
//	natscheck <scenario> --pub-url U[,U...] --sub-url U[,U...] [flags]
//
// TLS: --tls-ca FILE verifies the servers against a PEM CA bundle (and makes
// every connection use TLS); --tls-cert/--tls-key present a client
// certificate, for servers that verify clients. Without them a server that
// requires TLS is verified against the system roots, as nats.go does.
//
// Publishers connect to --pub-url and subscribers to --sub-url (connections are
// spread round-robin over a comma-separated list), so pointing the two at
// different nodes of a mesh or cluster makes every scenario a cross-node test.
//
// Every scenario counts exactly (loss, duplicates, order, content) and prints a
// human log on stderr and exactly one JSON object line on stdout. Exit status:
// 0 every check passed, 1 a check failed (or the hard deadline passed),
// 2 usage or setup error (such as failing to connect).
//
// It builds offline in GOPATH mode against Debian's nats.go:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o natscheck .
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

const (
	exitPass  = 0
	exitFail  = 1
	exitUsage = 2

	// grace is how long to keep listening after the last expected message, so
	// that duplicates and strays arriving late are caught.
	grace = 300 * time.Millisecond
	// seqHdr is the sequenced payload header: publisher id (uint32 LE) | sequence (uint64 LE).
	seqHdr = 12
)

// scenario is one named check; run returns a setupError for usage/connection
// problems (exit 2) and records check failures on the run (exit 1).
type scenario struct {
	run  func(*run) error
	help string
}

var scenarios = map[string]scenario{
	"pubsub":       {runPubSub, "plain subscribers: every message exactly once, per-publisher order, intact payloads"},
	"echo":         {runEcho, "echo on/off (CONNECT echo): a no-echo connection never gets its own messages"},
	"wildcards":    {runWildcards, "'*' and '>' subscriptions get exactly the matching messages, in order"},
	"queue":        {runQueue, "queue groups: each message to exactly one member of each group; per-member share"},
	"request":      {runRequest, "request/reply, new-style (mux inbox) and old-style, with a queue-group responder"},
	"noresponders": {runNoResponders, "a request without subscribers fails promptly with ErrNoResponders"},
	"headers":      {runHeaders, "HPUB/HMSG: multi-value headers and binary payloads round trip intact"},
	"unsub-max":    {runUnsubMax, "AutoUnsubscribe(n) (UNSUB sid max) delivers exactly n, also server-side"},
	"drain":        {runDrain, "Drain() delivers every in-flight message and closes cleanly"},
	"auth":         {runAuth, "user/password accepted; wrong or missing credentials get Authorization Violation"},
	"flush-rtt":    {runFlushRTT, "Flush, RTT, client PINGs; reports server version, servers, discovered servers"},
	"failover":     {runFailover, "subscriber fails over while a publisher keeps publishing; prints READY on stderr"},
	"slowconsumer": {runSlowConsumer, "a subscriber that stops reading is cut off; nobody else is slowed down"},
	"subflush":     {runSubFlush, "Subscribe + Flush, then a publish on every pub URL at once: nothing lost (the interest barrier)"},
}

type config struct {
	scenario        string
	pubURLs         []string
	subURLs         []string
	user, pass      string
	subject         string // single-token prefix for every subject the run uses
	timeout         float64
	deadline        float64
	duration        float64
	msgs, pubs      int
	subs, members   int
	size            int
	maxDev          float64
	rate            float64
	maxLost         int
	minReconnects   int
	expectClose     bool
	stall           float64
	maxRequestDelay float64
	maxHealthy      float64
	windowMB        float64
	noRandomize     bool
	tlsCA           string
	tlsCert         string
	tlsKey          string
	probeSubject    string
	untilSignal     bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		logf("natscheck: %v", err)
		logf("usage: natscheck <scenario> --pub-url U[,U..] --sub-url U[,U..] [flags]   (natscheck <scenario> -h)")
		names := make([]string, 0, len(scenarios))
		for n := range scenarios {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			logf("  %-13s %s", n, scenarios[n].help)
		}
		name := ""
		if cfg != nil {
			name = cfg.scenario
		}
		emit(map[string]any{"scenario": name, "ok": false, "error": err.Error()}, exitUsage)
	}
	r := newRun(cfg)
	time.AfterFunc(secs(cfg.deadline), r.watchdog)
	start := time.Now()
	logf("%s: pub %v, sub %v, subject prefix %s", cfg.scenario, cfg.pubURLs, cfg.subURLs, cfg.subject)
	err = scenarios[cfg.scenario].run(r)
	r.closeAll()
	r.set("elapsed_s", time.Since(start).Seconds())
	var se setupError
	switch {
	case errors.As(err, &se):
		logf("%s: SETUP ERROR: %v", cfg.scenario, err)
		r.set("error", err.Error())
		r.finish(exitUsage)
	case err != nil:
		r.failf("%v", err)
	}
	r.finish(exitPass)
}

func parseFlags(args []string) (*config, error) {
	if len(args) < 1 || strings.HasPrefix(args[0], "-") {
		return nil, errors.New("missing scenario")
	}
	cfg := &config{scenario: args[0]}
	if _, ok := scenarios[cfg.scenario]; !ok {
		return cfg, fmt.Errorf("unknown scenario %q", cfg.scenario)
	}
	var pubURL, subURL string
	fs := flag.NewFlagSet(cfg.scenario, flag.ContinueOnError)
	fs.StringVar(&pubURL, "pub-url", nats.DefaultURL, "publisher server URL(s), comma separated")
	fs.StringVar(&subURL, "sub-url", "", "subscriber server URL(s), comma separated (default: --pub-url)")
	fs.StringVar(&cfg.user, "user", "", "user name")
	fs.StringVar(&cfg.pass, "pass", "", "password")
	fs.StringVar(&cfg.subject, "subject", "", "subject prefix, one token (default: natscheck_<random>)")
	fs.Float64Var(&cfg.timeout, "timeout", 10, "seconds to wait for interest, deliveries, replies")
	fs.Float64Var(&cfg.deadline, "deadline", 0, "hard limit in seconds for the whole run (default: 60 + 4*timeout + duration)")
	fs.Float64Var(&cfg.duration, "duration", 10, "failover: seconds to keep publishing")
	fs.IntVar(&cfg.msgs, "msgs", 0, "messages (default depends on the scenario)")
	fs.IntVar(&cfg.pubs, "pubs", 2, "pubsub/queue: publisher connections")
	fs.IntVar(&cfg.subs, "subs", 3, "pubsub: subscriber connections")
	fs.IntVar(&cfg.members, "members", 4, "queue: members of the main group")
	fs.IntVar(&cfg.size, "size", 0, "max payload size in bytes (default depends on the scenario)")
	fs.Float64Var(&cfg.maxDev, "max-dev", 0, "queue: fail when a member's share deviates from 1/K by more than this percent (0 = report only)")
	fs.Float64Var(&cfg.rate, "rate", 1000, "failover: publish rate in msgs/s")
	fs.IntVar(&cfg.maxLost, "max-lost", -1, "failover: fail when more messages than this are lost (-1 = report only)")
	fs.IntVar(&cfg.minReconnects, "min-reconnects", 0, "failover: fail when the subscriber reconnected fewer times")
	fs.BoolVar(&cfg.expectClose, "expect-close", true, "slowconsumer: fail unless the server cut the stalled subscriber off")
	fs.Float64Var(&cfg.stall, "stall", 1, "slowconsumer: seconds to keep the subscriber stalled after publishing")
	fs.BoolVar(&cfg.noRandomize, "no-randomize", false, "failover: try the URLs in the order given (nats.DontRandomize)")
	fs.StringVar(&cfg.probeSubject, "probe-subject", "", "failover: the subscriber connection also subscribes this subject and prints \"PROBE <payload>\" on stderr for each message (a harness checks its subscriptions are live)")
	fs.BoolVar(&cfg.untilSignal, "until-signal", false, "failover: SIGUSR1 ends the publishing phase early (--duration stays the upper bound)")
	fs.Float64Var(&cfg.windowMB, "window-mb", 1, "slowconsumer: publish at most this many MB ahead of the healthy subscriber")
	fs.Float64Var(&cfg.maxHealthy, "max-healthy-s", 0, "slowconsumer: fail when the healthy subscriber needs longer than this many seconds (0 = report only)")
	fs.Float64Var(&cfg.maxRequestDelay, "prompt", 2, "noresponders: seconds within which ErrNoResponders must arrive")
	fs.StringVar(&cfg.tlsCA, "tls-ca", "", "PEM CA bundle to verify the servers with (TLS; nats.RootCAs)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "client certificate (PEM) for servers that verify clients (nats.ClientCert)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "private key (PEM) for --tls-cert")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if subURL == "" {
		subURL = pubURL
	}
	var err error
	if cfg.pubURLs, err = splitURLs(pubURL); err != nil {
		return cfg, err
	}
	if cfg.subURLs, err = splitURLs(subURL); err != nil {
		return cfg, err
	}
	if cfg.subject == "" {
		cfg.subject = "natscheck_" + nuid.Next()
	}
	if cfg.deadline <= 0 {
		cfg.deadline = 60 + 4*cfg.timeout + cfg.duration + cfg.stall
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return cfg, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.timeout <= 0 || cfg.pubs < 1 || cfg.subs < 1 || cfg.members < 1 || cfg.msgs < 0 || cfg.size < 0 || cfg.rate <= 0 {
		return cfg, errors.New("--timeout, --rate, --pubs, --subs and --members must be positive")
	}
	return cfg, nil
}

// tlsOptions are the TLS options from --tls-ca/--tls-cert/--tls-key (none
// when those are unset: nats.go then uses TLS only when the server requires it).
func (cfg *config) tlsOptions() []nats.Option {
	var opts []nats.Option
	if cfg.tlsCA != "" {
		opts = append(opts, nats.RootCAs(cfg.tlsCA))
	}
	if cfg.tlsCert != "" {
		opts = append(opts, nats.ClientCert(cfg.tlsCert, cfg.tlsKey))
	}
	return opts
}

func splitURLs(s string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty URL list %q", s)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// The run: result fields, failures, connections, the watchdog.

// setupError marks an error that is not the server failing a check
// (bad usage, cannot connect): exit status 2.
type setupError struct{ error }

func setupf(format string, a ...any) error { return setupError{fmt.Errorf(format, a...)} }

type run struct {
	cfg *config

	mu        sync.Mutex
	res       map[string]any
	fails     []string
	conns     []*nats.Conn
	asyncErrs []string // errors nats.go reported asynchronously, "conn: error"
	finished  sync.Once
}

func newRun(cfg *config) *run {
	return &run{cfg: cfg, res: map[string]any{"scenario": cfg.scenario}}
}

func (r *run) set(key string, v any) {
	r.mu.Lock()
	r.res[key] = v
	r.mu.Unlock()
}

func (r *run) failf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	logf("%s: FAIL: %s", r.cfg.scenario, msg)
	r.mu.Lock()
	r.fails = append(r.fails, msg)
	r.mu.Unlock()
}

// check records a failure unless ok, and returns ok.
func (r *run) check(ok bool, format string, a ...any) bool {
	if !ok {
		r.failf(format, a...)
	}
	return ok
}

// finish prints the one JSON result line and exits; code is raised to 1 when
// any check failed. Only the first caller prints.
func (r *run) finish(code int) {
	r.finished.Do(func() {
		r.mu.Lock()
		fails := append([]string{}, r.fails...)
		if code == exitPass && len(fails) > 0 {
			code = exitFail
		}
		r.res["ok"] = code == exitPass
		r.res["failures"] = fails
		if len(r.asyncErrs) > 0 {
			r.res["async_errors"] = r.asyncErrs
		}
		out := make(map[string]any, len(r.res))
		for k, v := range r.res {
			out[k] = v
		}
		r.mu.Unlock()
		if code == exitPass {
			logf("%s: PASS", r.cfg.scenario)
		}
		emit(out, code)
	})
	select {} // another goroutine is printing and exiting
}

func emit(res map[string]any, code int) {
	b, err := json.Marshal(res)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"ok":false,"error":%q}`, err.Error()))
		code = exitFail
	}
	fmt.Println(string(b))
	os.Exit(code)
}

// watchdog ends a run that is stuck, with the goroutine stacks on stderr so
// the hang can be diagnosed from a CI log.
func (r *run) watchdog() {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	logf("%s: hard deadline of %gs exceeded; goroutines:\n%s", r.cfg.scenario, r.cfg.deadline, buf[:n])
	r.failf("hard deadline of %gs exceeded", r.cfg.deadline)
	r.set("error", "deadline exceeded")
	r.finish(exitFail)
}

func (r *run) asyncErr(name string, sub *nats.Subscription, err error) {
	msg := name + ": " + err.Error()
	if sub != nil {
		msg += " (subject " + sub.Subject + ")"
	}
	r.mu.Lock()
	if len(r.asyncErrs) < 20 {
		r.asyncErrs = append(r.asyncErrs, msg)
	}
	r.mu.Unlock()
	logf("%s: async error on %s", r.cfg.scenario, msg)
}

// checkNoAsyncErrors fails the run when nats.go reported asynchronous errors
// (slow consumer, permissions violation, ...) on any connection.
func (r *run) checkNoAsyncErrors() {
	r.mu.Lock()
	errs := append([]string{}, r.asyncErrs...)
	r.mu.Unlock()
	r.check(len(errs) == 0, "%d asynchronous errors reported by the client: %v", len(errs), errs)
}

// connect opens a connection that never reconnects: in the single-shot scenarios
// a dropped connection is a failure to report, not something to paper over.
func (r *run) connect(url, name string, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, r.options(name, false, extra...)...)
	if err != nil {
		return nil, setupf("connect %s to %s: %w", name, url, err)
	}
	r.track(nc)
	return nc, nil
}

func (r *run) options(name string, reconnect bool, extra ...nats.Option) []nats.Option {
	opts := []nats.Option{
		nats.Name("natscheck-" + name),
		nats.Timeout(secs(r.cfg.timeout)),
		nats.FlusherTimeout(secs(r.cfg.timeout)),
		nats.DrainTimeout(secs(r.cfg.timeout)),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) { r.asyncErr(name, s, err) }),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				logf("%s: %s disconnected: %v", r.cfg.scenario, name, err)
			}
		}),
	}
	if !reconnect {
		opts = append(opts, nats.NoReconnect())
	}
	if r.cfg.user != "" {
		opts = append(opts, nats.UserInfo(r.cfg.user, r.cfg.pass))
	}
	opts = append(opts, r.cfg.tlsOptions()...)
	return append(opts, extra...)
}

func (r *run) track(nc *nats.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, nc)
	r.mu.Unlock()
}

// dialN opens n connections spread round-robin over urls.
func (r *run) dialN(urls []string, n int, role string, extra ...nats.Option) ([]*nats.Conn, error) {
	conns := make([]*nats.Conn, n)
	for i := range conns {
		nc, err := r.connect(urls[i%len(urls)], fmt.Sprintf("%s-%d", role, i), extra...)
		if err != nil {
			return nil, err
		}
		conns[i] = nc
	}
	return conns, nil
}

func (r *run) closeAll() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
}

// checkOpen fails for every connection that is no longer connected.
func (r *run) checkOpen(role string, conns ...*nats.Conn) {
	for i, nc := range conns {
		r.check(nc.IsConnected(), "%s %d (%s) lost its connection: %v", role, i, nc.Opts.Name, nc.LastError())
	}
}

func anyClosed(conns ...*nats.Conn) bool {
	for _, nc := range conns {
		if !nc.IsConnected() {
			return true
		}
	}
	return false
}

// subject builds a subject under the run's private prefix.
func (r *run) subject(tokens ...string) string {
	return strings.Join(append([]string{r.cfg.subject}, tokens...), ".")
}

func (r *run) defaultInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// ---------------------------------------------------------------------------
// Waiting for interest.

// probes are the private subscriptions awaitInterest used; they stay
// subscribed until close, so late probe messages are still counted.
type probes struct {
	subs      []*nats.Subscription
	delivered []atomic.Int64 // per subscriber connection
}

func (p *probes) close() {
	for _, s := range p.subs {
		s.Unsubscribe()
	}
}

// awaitInterest returns once every publisher connection has got a probe through
// to every subscriber connection. Each subscriber connection subscribes to its
// probe subject after its data subscriptions, so with in-order interest
// propagation (SPEC §2) a probe getting through means the data interest is
// visible at the publisher's node too.
func (r *run) awaitInterest(pubs, subs []*nats.Conn) (*probes, error) {
	p := &probes{delivered: make([]atomic.Int64, len(subs))}
	prefix := "_natscheck_probe_" + nuid.Next()
	seen := make([]atomic.Bool, len(pubs)*len(subs))
	for i, nc := range subs {
		i := i
		s, err := nc.Subscribe(fmt.Sprintf("%s.%d", prefix, i), func(m *nats.Msg) {
			p.delivered[i].Add(1)
			if k, err := strconv.Atoi(string(m.Data)); err == nil && k >= 0 && k < len(pubs) {
				seen[k*len(subs)+i].Store(true)
			}
		})
		if err != nil {
			return nil, setupf("probe subscribe: %w", err)
		}
		s.SetPendingLimits(-1, -1)
		p.subs = append(p.subs, s)
		if err := nc.Flush(); err != nil {
			return nil, fmt.Errorf("flush subscriber %d: %w", i, err)
		}
	}
	missing := 0
	start := time.Now()
	ok := waitUntil(secs(r.cfg.timeout), func() bool {
		missing = 0
		for k, nc := range pubs {
			for i := range subs {
				if !seen[k*len(subs)+i].Load() {
					missing++
					nc.Publish(fmt.Sprintf("%s.%d", prefix, i), []byte(strconv.Itoa(k)))
				}
			}
		}
		if missing > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		return missing == 0
	})
	if !ok {
		p.close()
		return nil, fmt.Errorf("interest not visible after %gs: %d publisher/subscriber pairs never got a probe through",
			r.cfg.timeout, missing)
	}
	logf("%s: interest visible after %v", r.cfg.scenario, time.Since(start).Round(time.Millisecond))
	return p, nil
}

// subscribe creates an async subscription without client-side pending limits
// (a burst is buffered, not dropped: we test the server, not the client's limits).
func subscribe(nc *nats.Conn, subject, queue string, cb nats.MsgHandler) (*nats.Subscription, error) {
	var s *nats.Subscription
	var err error
	if queue == "" {
		s, err = nc.Subscribe(subject, cb)
	} else {
		s, err = nc.QueueSubscribe(subject, queue, cb)
	}
	if err != nil {
		return nil, setupf("subscribe %q: %w", subject, err)
	}
	if err := s.SetPendingLimits(-1, -1); err != nil {
		return nil, setupf("pending limits: %w", err)
	}
	return s, nil
}

func flushAll(timeout time.Duration, conns ...*nats.Conn) error {
	for _, nc := range conns {
		if err := nc.FlushTimeout(timeout); err != nil {
			return fmt.Errorf("flush %s: %w", nc.Opts.Name, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Sequenced payloads and per-subscription stream accounting.

// payloadSize is the deterministic size of message seq of publisher pub: mostly
// small and varied, with a large one now and then so that messages span many
// reads and writes on both sides.
func payloadSize(pub uint32, seq uint64, max int) int {
	if seq%997 == 500 {
		return 128 << 10
	}
	return seqHdr + int(mix(uint64(pub)<<40^seq)%uint64(max-seqHdr+1))
}

func makePayload(pub uint32, seq uint64, max int) []byte {
	b := make([]byte, payloadSize(pub, seq, max))
	binary.LittleEndian.PutUint32(b, pub)
	binary.LittleEndian.PutUint64(b[4:], seq)
	fill(b[seqHdr:], pub, seq)
	return b
}

// fill writes pseudo-random bytes derived from (pub, seq): every byte value
// occurs, including CR, LF and NUL, so any framing or copying slip shows.
func fill(b []byte, pub uint32, seq uint64) {
	x := mix(uint64(pub)<<32 ^ seq ^ 0x9e3779b97f4a7c15)
	for i := range b {
		if i%8 == 0 {
			x = mix(x)
		}
		b[i] = byte(x >> (8 * (i % 8)))
	}
}

func mix(x uint64) uint64 { // splitmix64 finalizer
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// decodePayload returns the header of a sequenced payload and whether its size
// and content are exactly what the publisher sent.
func decodePayload(b []byte, max int) (pub uint32, seq uint64, ok bool) {
	if len(b) < seqHdr {
		return 0, 0, false
	}
	pub, seq = binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint64(b[4:])
	if len(b) != payloadSize(pub, seq, max) {
		return pub, seq, false
	}
	want := make([]byte, len(b)-seqHdr)
	fill(want, pub, seq)
	return pub, seq, string(want) == string(b[seqHdr:])
}

// stream is one subscription's view of sequence numbers from several publishers.
type stream struct {
	mu        sync.Mutex
	seen      [][]bool // [publisher][seq]
	next      []uint64 // highest sequence seen + 1, per publisher
	received  int64
	dups      int64 // a sequence number seen twice
	reordered int64 // first seen after a higher one from the same publisher
	bad       int64 // wrong size, content, subject or reply
	badNote   string
}

func newStream(pubs int) *stream {
	return &stream{seen: make([][]bool, pubs), next: make([]uint64, pubs)}
}

// add accounts one message; ok is false for a corrupt one.
func (s *stream) add(pub uint32, seq uint64, ok bool, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received++
	if !ok || int(pub) >= len(s.seen) || seq > 1<<28 {
		s.bad++
		if s.badNote == "" {
			s.badNote = fmt.Sprintf("publisher %d seq %d: %s", pub, seq, note)
		}
		return
	}
	seen := s.seen[pub]
	for uint64(len(seen)) <= seq {
		seen = append(seen, false)
	}
	s.seen[pub] = seen
	switch {
	case seen[seq]:
		s.dups++
	case seq < s.next[pub]:
		s.reordered++
	}
	seen[seq] = true
	if seq >= s.next[pub] {
		s.next[pub] = seq + 1
	}
}

func (s *stream) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// missing lists the sequence numbers below want[pub] that never arrived.
func (s *stream) missing(want []uint64) (n int64, ranges [][2]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, w := range want {
		first := len(ranges) // ranges of earlier publishers are not extended
		for seq := uint64(0); seq < w; seq++ {
			if seq < uint64(len(s.seen[p])) && s.seen[p][seq] {
				continue
			}
			n++
			if k := len(ranges); k > first && ranges[k-1][1] == seq-1 {
				ranges[k-1][1] = seq
			} else {
				ranges = append(ranges, [2]uint64{seq, seq})
			}
		}
	}
	return n, ranges
}

// verify checks the stream got exactly want[p] messages from each publisher p,
// each once, in order, intact.
func (s *stream) verify(r *run, what string, want []uint64) {
	lost, ranges := s.missing(want)
	s.mu.Lock()
	defer s.mu.Unlock()
	var total uint64
	for _, w := range want {
		total += w
	}
	if len(ranges) > 5 {
		ranges = ranges[:5]
	}
	r.check(lost == 0 && s.dups == 0 && s.reordered == 0 && s.bad == 0 && s.received == int64(total),
		"%s: received %d of %d: %d lost (first ranges %v), %d duplicates, %d out of order, %d corrupt %s",
		what, s.received, total, lost, ranges, s.dups, s.reordered, s.bad, s.badNote)
}

// publishSeq publishes n sequenced messages from publisher pub to subject and
// flushes; every replyEvery-th message carries a reply subject derived from it.
func (r *run) publishSeq(nc *nats.Conn, pub uint32, n int, subject string, max, replyEvery int) error {
	for seq := 0; seq < n; seq++ {
		data := makePayload(pub, uint64(seq), max)
		var err error
		if replyEvery > 0 && seq%replyEvery == 0 {
			err = nc.PublishRequest(subject, replyFor(r, pub, uint64(seq)), data)
		} else {
			err = nc.Publish(subject, data)
		}
		if err != nil {
			return fmt.Errorf("publisher %d: publish %d: %w", pub, seq, err)
		}
	}
	return nc.FlushTimeout(secs(r.cfg.timeout))
}

func replyFor(r *run, pub uint32, seq uint64) string {
	return r.subject("reply", strconv.Itoa(int(pub)), strconv.FormatUint(seq, 10))
}

func share(total, parts, i int) int {
	n := total / parts
	if i < total%parts {
		n++
	}
	return n
}

// ---------------------------------------------------------------------------
// pubsub

func runPubSub(r *run) error {
	cfg := r.cfg
	r.defaultInt(&cfg.msgs, 20000)
	r.defaultInt(&cfg.size, 1024)
	if cfg.size < seqHdr {
		return setupf("--size must be at least %d", seqHdr)
	}
	subject := r.subject("data")
	const replyEvery = 7
	subs, err := r.dialN(cfg.subURLs, cfg.subs, "sub")
	if err != nil {
		return err
	}
	streams := make([]*stream, len(subs))
	var strays atomic.Int64 // messages on a sibling subject nobody publishes to
	for i, nc := range subs {
		st := newStream(cfg.pubs)
		streams[i] = st
		_, err := subscribe(nc, subject, "", func(m *nats.Msg) {
			p, seq, ok := decodePayload(m.Data, cfg.size)
			note := "payload differs"
			wantReply := ""
			if seq%replyEvery == 0 {
				wantReply = replyFor(r, p, seq)
			}
			if ok && (m.Subject != subject || m.Reply != wantReply) {
				ok, note = false, fmt.Sprintf("subject %q reply %q, want %q %q", m.Subject, m.Reply, subject, wantReply)
			}
			st.add(p, seq, ok, note)
		})
		if err != nil {
			return err
		}
		if _, err := subscribe(nc, r.subject("data", "other"), "", func(*nats.Msg) { strays.Add(1) }); err != nil {
			return err
		}
	}
	pubs, err := r.dialN(cfg.pubURLs, cfg.pubs, "pub")
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest(pubs, subs)
	if err != nil {
		return err
	}
	defer pr.close()

	want := make([]uint64, cfg.pubs)
	errs := make([]error, cfg.pubs)
	var wg sync.WaitGroup
	start := time.Now()
	for p, nc := range pubs {
		want[p] = uint64(share(cfg.msgs, cfg.pubs, p))
		wg.Add(1)
		go func(p int, nc *nats.Conn) {
			defer wg.Done()
			errs[p] = r.publishSeq(nc, uint32(p), int(want[p]), subject, cfg.size, replyEvery)
		}(p, nc)
	}
	wg.Wait()
	pubElapsed := time.Since(start)
	waitUntil(secs(cfg.timeout), func() bool {
		for _, st := range streams {
			if st.count() < int64(cfg.msgs) {
				return anyClosed(subs...)
			}
		}
		return true
	})
	elapsed := time.Since(start)
	time.Sleep(grace)

	for _, err := range errs {
		r.check(err == nil, "publish: %v", err)
	}
	received := make([]int64, len(streams))
	for i, st := range streams {
		received[i] = st.count()
		st.verify(r, fmt.Sprintf("sub %d (%s)", i, subs[i].ConnectedUrl()), want)
	}
	r.check(strays.Load() == 0, "%d messages arrived on a subject nobody published to", strays.Load())
	r.checkOpen("sub", subs...)
	r.checkOpen("pub", pubs...)
	r.checkNoAsyncErrors()
	r.set("pubs", cfg.pubs)
	r.set("subs", cfg.subs)
	r.set("msgs", cfg.msgs)
	r.set("received", received)
	r.set("pub_elapsed_s", pubElapsed.Seconds())
	r.set("delivery_elapsed_s", elapsed.Seconds())
	logf("pubsub: %d pubs -> %d subs, %d msgs: received %v in %v", cfg.pubs, cfg.subs, cfg.msgs, received,
		elapsed.Round(time.Millisecond))
	return nil
}

// ---------------------------------------------------------------------------
// echo

// runEcho: connection A (echo on, pub URL) and B (NoEcho, sub URL) both
// subscribe to one subject and both publish n messages to it. A gets 2n, B
// gets only A's n.
func runEcho(r *run) error {
	r.defaultInt(&r.cfg.msgs, 100)
	n := r.cfg.msgs
	subject := r.subject("echo")
	a, err := r.connect(r.cfg.pubURLs[0], "echo-on")
	if err != nil {
		return err
	}
	b, err := r.connect(r.cfg.subURLs[0], "echo-off", nats.NoEcho())
	if err != nil {
		return err
	}
	var fromA, fromB [2]atomic.Int64 // [receiver] by sender
	for i, nc := range []*nats.Conn{a, b} {
		i := i
		if _, err := subscribe(nc, subject, "", func(m *nats.Msg) {
			switch {
			case strings.HasPrefix(string(m.Data), "A"):
				fromA[i].Add(1)
			case strings.HasPrefix(string(m.Data), "B"):
				fromB[i].Add(1)
			}
		}); err != nil {
			return err
		}
	}
	// Each must see the other's interest before publishing. The probes from B
	// to its own probe subject would not come back (no echo), so probe across only.
	pr, err := r.awaitInterest([]*nats.Conn{a}, []*nats.Conn{b})
	if err != nil {
		return err
	}
	defer pr.close()
	pr2, err := r.awaitInterest([]*nats.Conn{b}, []*nats.Conn{a})
	if err != nil {
		return err
	}
	defer pr2.close()
	for i := 0; i < n; i++ {
		a.Publish(subject, []byte(fmt.Sprintf("A%d", i)))
		b.Publish(subject, []byte(fmt.Sprintf("B%d", i)))
	}
	if err := flushAll(secs(r.cfg.timeout), a, b); err != nil {
		return err
	}
	want := int64(n)
	waitUntil(secs(r.cfg.timeout), func() bool {
		return fromA[0].Load() >= want && fromB[0].Load() >= want && fromA[1].Load() >= want
	})
	time.Sleep(grace)
	r.check(fromA[0].Load() == want, "echo-on connection got %d of its own %d messages", fromA[0].Load(), n)
	r.check(fromB[0].Load() == want, "echo-on connection got %d of the other's %d messages", fromB[0].Load(), n)
	r.check(fromA[1].Load() == want, "no-echo connection got %d of the other's %d messages", fromA[1].Load(), n)
	r.check(fromB[1].Load() == 0, "no-echo connection got %d of its own messages back (want 0)", fromB[1].Load())
	r.checkOpen("conn", a, b)
	r.checkNoAsyncErrors()
	r.set("msgs", n)
	r.set("echo_on_own", fromA[0].Load())
	r.set("echo_on_other", fromB[0].Load())
	r.set("echo_off_own", fromB[1].Load())
	r.set("echo_off_other", fromA[1].Load())
	return nil
}

// ---------------------------------------------------------------------------
// wildcards

// matches is the reference subject matcher: '*' matches one token, '>' one or
// more trailing tokens.
func matches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, t := range pt {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

func runWildcards(r *run) error {
	P := r.cfg.subject
	r.defaultInt(&r.cfg.msgs, 3) // copies of each subject
	copies := r.cfg.msgs
	var subjects []string
	for _, s := range []string{"", "a", "b", "A", "a.b", "a.c", "b.c", "A.b", "a.b.c", "x.b.c", "a.x.c",
		"a.b.c.d", "a.b.c.d.e", "a-b_c.d$e", "x.y", "a.bb", "aa.b"} {
		subjects = append(subjects, strings.TrimSuffix(P+"."+s, "."))
	}
	patterns := []string{P + ".*", P + ".>", P + ".a.*", P + ".*.c", P + ".*.b.*", P + ".a.>", P + ".a.b.c",
		P + ".*.*.*", P + ".a.b.>", P + ".A.>", P + ".a.b.c.d.>", P + ".*.*.*.*.*", P, ">", "*", "*.a", "*.*.b"}
	ours := func(s string) bool { return s == P || strings.HasPrefix(s, P+".") }

	// Spread the patterns over two connections per subscriber URL, so that
	// overlapping subscriptions share connections (each still gets its own copy).
	conns, err := r.dialN(r.cfg.subURLs, 2*len(r.cfg.subURLs), "sub")
	if err != nil {
		return err
	}
	got := make([][]string, len(patterns))
	var mu sync.Mutex
	var corrupt []string
	for i, pat := range patterns {
		i := i
		_, err := subscribe(conns[i%len(conns)], pat, "", func(m *nats.Msg) {
			if !ours(m.Subject) {
				return // traffic of other tests on the same server, seen by '>' and friends
			}
			mu.Lock()
			defer mu.Unlock()
			got[i] = append(got[i], string(m.Data))
			if !strings.HasPrefix(string(m.Data), m.Subject+"#") && len(corrupt) < 5 {
				corrupt = append(corrupt, fmt.Sprintf("%q on %q", m.Data, m.Subject))
			}
		})
		if err != nil {
			return err
		}
	}
	pub, err := r.connect(r.cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, conns)
	if err != nil {
		return err
	}
	defer pr.close()

	// One publisher, interleaved subjects: every subscription must see its
	// matching subsequence of this exact order.
	var order []string
	for k := 0; k < copies; k++ {
		for _, s := range subjects {
			msg := fmt.Sprintf("%s#%d", s, k)
			order = append(order, msg)
			if err := pub.Publish(s, []byte(msg)); err != nil {
				return fmt.Errorf("publish %s: %w", s, err)
			}
		}
	}
	if err := pub.FlushTimeout(secs(r.cfg.timeout)); err != nil {
		return err
	}
	want := make([][]string, len(patterns))
	total := 0
	for i, pat := range patterns {
		for _, msg := range order {
			if matches(pat, msg[:strings.LastIndexByte(msg, '#')]) {
				want[i] = append(want[i], msg)
			}
		}
		total += len(want[i])
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range got {
			n += len(g)
		}
		return n
	}
	waitUntil(secs(r.cfg.timeout), func() bool { return count() >= total || anyClosed(conns...) })
	time.Sleep(grace)

	mu.Lock()
	defer mu.Unlock()
	perPattern := map[string]int{}
	for i, pat := range patterns {
		perPattern[pat] = len(got[i])
		if !reflect.DeepEqual(got[i], want[i]) && !(len(got[i]) == 0 && len(want[i]) == 0) {
			r.failf("subscription %q: got %d messages, want %d; %s", pat, len(got[i]), len(want[i]), firstDiff(got[i], want[i]))
		}
	}
	r.check(len(corrupt) == 0, "messages with a payload not matching their subject: %v", corrupt)
	r.checkOpen("sub", conns...)
	r.checkOpen("pub", pub)
	r.checkNoAsyncErrors()
	r.set("received_per_pattern", perPattern)
	r.set("expected_total", total)
	return nil
}

func firstDiff(got, want []string) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("first difference at #%d: got %s, want %s", i, g, w)
		}
	}
	return "identical"
}

// ---------------------------------------------------------------------------
// queue

// group tracks one queue group: deliveries per (publisher, seq) and per member.
type group struct {
	name      string
	seen      [][]atomic.Uint32
	perMember []atomic.Int64
	lastSeq   [][]atomic.Int64 // [member][publisher]: highest seq + 1, to check per-member order
	reordered atomic.Int64
	bad       atomic.Int64
	total     atomic.Int64
}

func newGroup(name string, members int, want []uint64) *group {
	g := &group{name: name, seen: make([][]atomic.Uint32, len(want)), perMember: make([]atomic.Int64, members),
		lastSeq: make([][]atomic.Int64, members)}
	for p, w := range want {
		g.seen[p] = make([]atomic.Uint32, w)
	}
	for i := range g.lastSeq {
		g.lastSeq[i] = make([]atomic.Int64, len(want))
	}
	return g
}

// handler is member i's message handler (each runs on its own subscription goroutine).
func (g *group) handler(i, max int) nats.MsgHandler {
	return func(m *nats.Msg) {
		p, seq, ok := decodePayload(m.Data, max)
		if !ok || int(p) >= len(g.seen) || seq >= uint64(len(g.seen[p])) {
			g.bad.Add(1)
			return
		}
		g.seen[p][seq].Add(1)
		if int64(seq) < g.lastSeq[i][p].Load() {
			g.reordered.Add(1)
		}
		g.lastSeq[i][p].Store(int64(seq) + 1)
		g.perMember[i].Add(1)
		g.total.Add(1)
	}
}

// verify checks exactly-once delivery over the group and the members' shares.
func (g *group) verify(r *run, msgs int, maxDev float64) map[string]any {
	var lost, dups int
	for p := range g.seen {
		for s := range g.seen[p] {
			switch n := g.seen[p][s].Load(); {
			case n == 0:
				lost++
			case n > 1:
				dups += int(n - 1)
			}
		}
	}
	k := len(g.perMember)
	ideal := float64(msgs) / float64(k)
	per := make([]int64, k)
	sharePct := make([]float64, k)
	dev := 0.0
	for i := range per {
		per[i] = g.perMember[i].Load()
		sharePct[i] = math.Round(1e4*float64(per[i])/float64(msgs)) / 100
		dev = math.Max(dev, 100*math.Abs(float64(per[i])-ideal)/ideal)
	}
	r.check(lost == 0 && dups == 0 && g.bad.Load() == 0 && g.total.Load() == int64(msgs),
		"group %s: delivered %d of %d: %d lost, %d duplicates, %d corrupt", g.name, g.total.Load(), msgs, lost, dups, g.bad.Load())
	r.check(g.reordered.Load() == 0, "group %s: %d messages reached a member out of publish order", g.name, g.reordered.Load())
	if maxDev > 0 {
		r.check(dev <= maxDev, "group %s: a member's share deviates %.1f%% from 1/%d (limit %g%%): %v", g.name, dev, k, maxDev, per)
	}
	logf("queue: group %s: %d members got %v (max deviation from 1/K %.1f%%)", g.name, k, per, dev)
	return map[string]any{"members": k, "delivered": g.total.Load(), "lost": lost, "duplicates": dups,
		"per_member": per, "share_pct": sharePct, "max_dev_pct": math.Round(dev*100) / 100}
}

// runQueue: group "main" (K members on the data subject), group "wild" (2
// members on a wildcard), and a plain subscriber, all over the sub URLs.
func runQueue(r *run) error {
	cfg := r.cfg
	r.defaultInt(&cfg.msgs, 10000)
	r.defaultInt(&cfg.size, 64)
	if cfg.size < seqHdr {
		return setupf("--size must be at least %d", seqHdr)
	}
	pubs := cfg.pubs
	if pubs == 2 && !flagSet("pubs") {
		pubs = 1
	}
	subject := r.subject("q")
	want := make([]uint64, pubs)
	for p := range want {
		want[p] = uint64(share(cfg.msgs, pubs, p))
	}
	mainGroup := newGroup("main", cfg.members, want)
	wild := newGroup("wild", 2, want)
	var subConns []*nats.Conn
	add := func(g *group, pattern string) error {
		conns, err := r.dialN(cfg.subURLs, len(g.perMember), "member-"+g.name)
		if err != nil {
			return err
		}
		for i, nc := range conns {
			if _, err := subscribe(nc, pattern, g.name, g.handler(i, cfg.size)); err != nil {
				return err
			}
		}
		subConns = append(subConns, conns...)
		return nil
	}
	if err := add(mainGroup, subject); err != nil {
		return err
	}
	if err := add(wild, r.subject("*")); err != nil {
		return err
	}
	plainConn, err := r.connect(cfg.subURLs[len(cfg.subURLs)-1], "plain")
	if err != nil {
		return err
	}
	plain := newStream(pubs)
	if _, err := subscribe(plainConn, subject, "", func(m *nats.Msg) {
		p, seq, ok := decodePayload(m.Data, cfg.size)
		plain.add(p, seq, ok, "payload differs")
	}); err != nil {
		return err
	}
	subConns = append(subConns, plainConn)
	pubConns, err := r.dialN(cfg.pubURLs, pubs, "pub")
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest(pubConns, subConns)
	if err != nil {
		return err
	}
	defer pr.close()

	start := time.Now()
	errs := make([]error, pubs)
	var wg sync.WaitGroup
	for p, nc := range pubConns {
		wg.Add(1)
		go func(p int, nc *nats.Conn) {
			defer wg.Done()
			errs[p] = r.publishSeq(nc, uint32(p), int(want[p]), subject, cfg.size, 0)
		}(p, nc)
	}
	wg.Wait()
	n := int64(cfg.msgs)
	waitUntil(secs(cfg.timeout), func() bool {
		return (mainGroup.total.Load() >= n && wild.total.Load() >= n && plain.count() >= n) || anyClosed(subConns...)
	})
	elapsed := time.Since(start)
	time.Sleep(grace)
	for _, err := range errs {
		r.check(err == nil, "publish: %v", err)
	}
	gm := mainGroup.verify(r, cfg.msgs, cfg.maxDev)
	gw := wild.verify(r, cfg.msgs, cfg.maxDev)
	plain.verify(r, "plain subscriber", want)
	r.checkOpen("sub", subConns...)
	r.checkNoAsyncErrors()
	r.set("msgs", cfg.msgs)
	r.set("members", cfg.members)
	r.set("per_member", gm["per_member"])
	r.set("share_pct", gm["share_pct"])
	r.set("max_dev_pct", gm["max_dev_pct"])
	r.set("groups", map[string]any{"main": gm, "wild": gw})
	r.set("plain_received", plain.count())
	r.set("elapsed_s", elapsed.Seconds())
	return nil
}

// flagSet reports whether a flag was given on the command line.
func flagSet(name string) bool {
	for _, a := range os.Args[2:] {
		if a == "-"+name || a == "--"+name || strings.HasPrefix(a, "-"+name+"=") || strings.HasPrefix(a, "--"+name+"=") {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// request

// runRequest: two responders in a queue group on the sub URLs; a new-style
// and an old-style requester on the pub URL, sequential and concurrent.
func runRequest(r *run) error {
	r.defaultInt(&r.cfg.msgs, 400) // per style
	n := r.cfg.msgs
	subject := r.subject("svc")
	var mu sync.Mutex
	handled := map[string]int{}
	var badReply []string
	perResponder := make([]atomic.Int64, 2)
	responders, err := r.dialN(r.cfg.subURLs, 2, "responder")
	if err != nil {
		return err
	}
	for i, nc := range responders {
		i := i
		_, err := subscribe(nc, subject, "responders", func(m *nats.Msg) {
			mu.Lock()
			handled[string(m.Data)]++
			if !strings.HasPrefix(m.Reply, "_INBOX.") && len(badReply) < 5 {
				badReply = append(badReply, fmt.Sprintf("%q for %q", m.Reply, m.Data))
			}
			mu.Unlock()
			perResponder[i].Add(1)
			resp := &nats.Msg{Data: append([]byte("re:"), m.Data...), Header: nats.Header{}}
			for k, v := range m.Header {
				resp.Header[k] = v
			}
			resp.Header.Set("Responder", strconv.Itoa(i))
			m.RespondMsg(resp)
		})
		if err != nil {
			return err
		}
		if err := nc.Flush(); err != nil {
			return err
		}
	}
	styles := []struct {
		name string
		opts []nats.Option
	}{{"new", nil}, {"old", []nats.Option{nats.UseOldRequestStyle()}}}
	results := map[string]any{}
	for _, st := range styles {
		nc, err := r.connect(r.cfg.pubURLs[0], "requester-"+st.name, st.opts...)
		if err != nil {
			return err
		}
		// Interest may take a moment to reach the requester's node.
		if !waitUntil(secs(r.cfg.timeout), func() bool {
			_, err := nc.Request(subject, []byte("warmup"), 250*time.Millisecond)
			return err == nil
		}) {
			r.failf("%s-style: responder not reachable within %gs", st.name, r.cfg.timeout)
			continue
		}
		results[st.name] = r.requests(nc, st.name, subject, n)
	}
	time.Sleep(grace)

	mu.Lock()
	var dupHandled, missing int
	for _, st := range styles {
		for i := 0; i < n; i++ {
			switch c := handled[requestPayload(st.name, i)]; {
			case c == 0:
				missing++
			case c > 1:
				dupHandled += c - 1
			}
		}
	}
	r.check(missing == 0 && dupHandled == 0, "responders handled requests wrongly: %d never seen, %d extra copies (queue group must deliver each once)", missing, dupHandled)
	r.check(len(badReply) == 0, "requests arrived without an _INBOX reply subject: %v", badReply)
	mu.Unlock()
	r.checkOpen("responder", responders...)
	r.checkNoAsyncErrors()
	r.set("per_style", results)
	r.set("per_responder", []int64{perResponder[0].Load(), perResponder[1].Load()})
	return nil
}

func requestPayload(style string, i int) string { return fmt.Sprintf("%s-%d", style, i) }

// requests sends n requests (half sequential, half from 8 goroutines, some with
// headers) and checks every reply belongs to its request.
func (r *run) requests(nc *nats.Conn, style, subject string, n int) map[string]any {
	var failed, wrong atomic.Int64
	one := func(i int) {
		payload := requestPayload(style, i)
		msg := &nats.Msg{Subject: subject, Data: []byte(payload)}
		if i%10 == 0 {
			msg.Header = nats.Header{"X-Request": []string{payload, "second value"}}
		}
		var resp *nats.Msg
		var err error
		if i%50 == 1 {
			ctx, cancel := context.WithTimeout(context.Background(), secs(r.cfg.timeout))
			resp, err = nc.RequestMsgWithContext(ctx, msg)
			cancel()
		} else {
			resp, err = nc.RequestMsg(msg, secs(r.cfg.timeout))
		}
		switch {
		case err != nil:
			if failed.Add(1) <= 3 {
				r.failf("%s-style request %d: %v", style, i, err)
			}
		case string(resp.Data) != "re:"+payload ||
			(msg.Header != nil && !reflect.DeepEqual(resp.Header["X-Request"], msg.Header["X-Request"])):
			if wrong.Add(1) <= 3 {
				r.failf("%s-style request %d: reply %q headers %v does not belong to it", style, i, resp.Data, resp.Header)
			}
		}
	}
	start := time.Now()
	half := n / 2
	for i := 0; i < half; i++ {
		one(i)
	}
	var next atomic.Int64
	next.Store(int64(half))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				one(i)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	logf("request: %s-style: %d requests in %v, %d failed, %d wrong replies", style, n, elapsed.Round(time.Millisecond),
		failed.Load(), wrong.Load())
	return map[string]any{"requests": n, "failed": failed.Load(), "wrong": wrong.Load(), "elapsed_s": elapsed.Seconds()}
}

// ---------------------------------------------------------------------------
// noresponders

func runNoResponders(r *run) error {
	prompt := secs(r.cfg.maxRequestDelay)
	timeout := secs(r.cfg.timeout)
	newStyle, err := r.connect(r.cfg.pubURLs[0], "requester-new")
	if err != nil {
		return err
	}
	oldStyle, err := r.connect(r.cfg.pubURLs[0], "requester-old", nats.UseOldRequestStyle())
	if err != nil {
		return err
	}
	res := map[string]any{}
	// 1. Nobody listens: the server answers 503 at once, for both request styles.
	for name, nc := range map[string]*nats.Conn{"new": newStyle, "old": oldStyle} {
		start := time.Now()
		_, err := nc.Request(r.subject("nobody"), []byte("hello"), timeout)
		took := time.Since(start)
		res[name+"_error"] = errString(err)
		res[name+"_ms"] = took.Milliseconds()
		if r.check(errors.Is(err, nats.ErrNoResponders), "%s-style request without subscribers: got %v after %v, want %v",
			name, err, took.Round(time.Millisecond), nats.ErrNoResponders) {
			r.check(took <= prompt, "%s-style: ErrNoResponders took %v (limit %v)", name, took, prompt)
		}
	}
	// 2. A subscriber that never answers is interest: a timeout, not 503.
	silentConn, err := r.connect(r.cfg.subURLs[0], "silent")
	if err != nil {
		return err
	}
	if _, err := subscribe(silentConn, r.subject("silent"), "", func(*nats.Msg) {}); err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{newStyle}, []*nats.Conn{silentConn})
	if err != nil {
		return err
	}
	pr.close()
	_, err = newStyle.Request(r.subject("silent"), []byte("hello"), 500*time.Millisecond)
	res["silent_error"] = errString(err)
	r.check(errors.Is(err, nats.ErrTimeout), "request to a subscriber that never replies: got %v, want %v", err, nats.ErrTimeout)

	// 3. Interest comes and goes: replies while the responder is there, 503 again after it unsubscribes.
	respConn, err := r.connect(r.cfg.subURLs[0], "responder")
	if err != nil {
		return err
	}
	subject := r.subject("later")
	s, err := subscribe(respConn, subject, "", func(m *nats.Msg) { m.Respond([]byte("yes")) })
	if err != nil {
		return err
	}
	respConn.Flush()
	var lastErr error
	if r.check(waitUntil(timeout, func() bool {
		_, lastErr = newStyle.Request(subject, nil, 250*time.Millisecond)
		return lastErr == nil
	}), "responder never reachable: %v", lastErr) {
		s.Unsubscribe()
		respConn.Flush()
		start := time.Now()
		ok := waitUntil(timeout, func() bool {
			_, lastErr = newStyle.Request(subject, nil, 250*time.Millisecond)
			if lastErr == nil {
				time.Sleep(10 * time.Millisecond)
			}
			return errors.Is(lastErr, nats.ErrNoResponders)
		})
		res["unsubscribed_ms"] = time.Since(start).Milliseconds()
		r.check(ok, "after the only responder unsubscribed, requests still get %v instead of ErrNoResponders", lastErr)
	}
	r.checkOpen("conn", newStyle, oldStyle, silentConn, respConn)
	r.checkNoAsyncErrors()
	for k, v := range res {
		r.set(k, v)
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ---------------------------------------------------------------------------
// headers

func headerCases(r *run) []*nats.Msg {
	binary := make([]byte, 0, 3*256+64)
	for k := 0; k < 3; k++ {
		for b := 0; b < 256; b++ {
			binary = append(binary, byte(b))
		}
	}
	binary = append(binary, "\r\nMSG x 1 5\r\nhello\r\nHMSG\r\n\r\nNATS/1.0\r\n"...)
	big := make([]byte, 512<<10)
	fill(big, 7, 7)
	long := strings.Repeat("0123456789abcdef", 512) // an 8 KiB header value, over the control line limit
	cases := []struct {
		hdr   nats.Header
		data  []byte
		reply string
	}{
		{nats.Header{"X-Multi": {"a", "b", "c"}, "X-Single": {"one"}}, []byte("multi-value"), ""},
		{nats.Header{"X-Case": {"upper"}, "x-case": {"lower"}, "X-CASE": {"all"}}, []byte("case-sensitive keys"), ""},
		{nats.Header{"X-Punct": {"a: b : c", "key=value; other=\"q\"", "zürich ☃"}}, []byte("punctuation and UTF-8"), ""},
		{nats.Header{"X-Empty": {""}, "X-Long": {long}}, []byte("empty and long values"), ""},
		{nats.Header{"X-Binary": {"payload"}}, binary, ""},
		{nats.Header{"X-Nothing": {"empty payload"}}, nil, ""},
		{nats.Header{"X-Reply": {"yes"}}, []byte("with a reply subject"), r.subject("hdr", "reply")},
		{nil, []byte("no headers at all"), ""},
		{nats.Header{"X-Big": {"512 KiB"}}, big, ""},
		{nil, nil, ""},
	}
	msgs := make([]*nats.Msg, len(cases))
	for i, c := range cases {
		msgs[i] = &nats.Msg{Subject: r.subject("hdr"), Reply: c.reply, Header: c.hdr, Data: c.data}
	}
	return msgs
}

func runHeaders(r *run) error {
	cases := headerCases(r)
	subject := cases[0].Subject
	sub, err := r.connect(r.cfg.subURLs[0], "sub")
	if err != nil {
		return err
	}
	pub, err := r.connect(r.cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	r.check(sub.HeadersSupported() && pub.HeadersSupported(), "server does not announce headers support in INFO")
	kinds := []struct{ pattern, queue string }{{subject, ""}, {r.subject("*"), ""}, {subject, "hq"}}
	got := make([][]*nats.Msg, len(kinds))
	var mu sync.Mutex
	for i, k := range kinds {
		i := i
		if _, err := subscribe(sub, k.pattern, k.queue, func(m *nats.Msg) {
			mu.Lock()
			got[i] = append(got[i], m)
			mu.Unlock()
		}); err != nil {
			return err
		}
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{sub})
	if err != nil {
		return err
	}
	defer pr.close()
	for i, m := range cases {
		if err := pub.PublishMsg(m); err != nil {
			r.failf("publish case %d: %v", i, err)
		}
	}
	if err := pub.FlushTimeout(secs(r.cfg.timeout)); err != nil {
		return err
	}
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range got {
			n += len(g)
		}
		return n
	}
	waitUntil(secs(r.cfg.timeout), func() bool { return received() >= len(kinds)*len(cases) || anyClosed(sub) })
	time.Sleep(grace)
	mu.Lock()
	for i, k := range kinds {
		what := fmt.Sprintf("subscription %q queue %q", k.pattern, k.queue)
		if !r.check(len(got[i]) == len(cases), "%s: got %d messages, want %d", what, len(got[i]), len(cases)) {
			continue
		}
		for j, m := range got[i] {
			r.compareMsg(fmt.Sprintf("%s, case %d", what, j), m, cases[j])
		}
	}
	mu.Unlock()

	// Headers on a request and its reply, across the two connections.
	responder, err := subscribe(sub, r.subject("hdr", "echo"), "", func(m *nats.Msg) {
		m.RespondMsg(&nats.Msg{Header: m.Header, Data: m.Data})
	})
	if err != nil {
		return err
	}
	sub.Flush()
	req := &nats.Msg{Subject: responder.Subject, Header: nats.Header{"X-Req": {"1", "2"}}, Data: cases[4].Data}
	var resp *nats.Msg
	if r.check(waitUntil(secs(r.cfg.timeout), func() bool {
		resp, err = pub.RequestMsg(req, 500*time.Millisecond)
		return err == nil
	}), "request with headers: %v", err) {
		r.compareMsg("reply to a request with headers", resp, &nats.Msg{Header: req.Header, Data: req.Data})
	}
	r.checkOpen("conn", sub, pub)
	r.checkNoAsyncErrors()
	r.set("cases", len(cases))
	r.set("subscriptions", len(kinds))
	return nil
}

// compareMsg checks that m carries exactly want's headers, payload and reply.
func (r *run) compareMsg(what string, m, want *nats.Msg) {
	hdr := m.Header
	if len(hdr) == 0 {
		hdr = nil
	}
	wantHdr := want.Header
	if len(wantHdr) == 0 {
		wantHdr = nil
	}
	r.check(reflect.DeepEqual(hdr, wantHdr), "%s: headers %v, want %v", what, trunc(hdr), trunc(wantHdr))
	r.check(string(m.Data) == string(want.Data), "%s: payload of %d bytes differs from the %d sent", what, len(m.Data), len(want.Data))
	if want.Subject != "" {
		r.check(m.Reply == want.Reply, "%s: reply %q, want %q", what, m.Reply, want.Reply)
	}
}

func trunc(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// ---------------------------------------------------------------------------
// unsub-max

// runUnsubMax: three subscriptions with AutoUnsubscribe(n): async, sync
// (NextMsg), and one that had already received 3 before; the publisher sends
// 3n each. Each must deliver exactly n, and the server must not send more
// (the subscriber connection's InMsgs counts what the server sent).
func runUnsubMax(r *run) error {
	r.defaultInt(&r.cfg.msgs, 10)
	n := r.cfg.msgs
	if n < 4 {
		return setupf("--msgs must be at least 4 for unsub-max")
	}
	const before = 3
	subNC, err := r.connect(r.cfg.subURLs[0], "sub")
	if err != nil {
		return err
	}
	pub, err := r.connect(r.cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	var asyncGot, lateGot atomic.Int64
	asyncSub, err := subscribe(subNC, r.subject("async"), "", func(*nats.Msg) { asyncGot.Add(1) })
	if err != nil {
		return err
	}
	if err := asyncSub.AutoUnsubscribe(n); err != nil {
		return setupf("AutoUnsubscribe: %w", err)
	}
	syncSub, err := subNC.SubscribeSync(r.subject("sync"))
	if err != nil {
		return setupf("SubscribeSync: %w", err)
	}
	syncSub.SetPendingLimits(-1, -1)
	if err := syncSub.AutoUnsubscribe(n); err != nil {
		return setupf("AutoUnsubscribe: %w", err)
	}
	lateSub, err := subscribe(subNC, r.subject("late"), "", func(*nats.Msg) { lateGot.Add(1) })
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{subNC})
	if err != nil {
		return err
	}
	defer pr.close()

	for i := 0; i < before; i++ {
		pub.Publish(lateSub.Subject, []byte("before"))
	}
	pub.FlushTimeout(secs(r.cfg.timeout))
	r.check(waitUntil(secs(r.cfg.timeout), func() bool { return lateGot.Load() >= before }),
		"plain subscription got %d of %d messages", lateGot.Load(), before)
	if err := lateSub.AutoUnsubscribe(n); err != nil {
		return setupf("AutoUnsubscribe after %d: %w", before, err)
	}
	subNC.Flush()
	for i := 0; i < 3*n; i++ {
		for _, s := range []string{asyncSub.Subject, syncSub.Subject, lateSub.Subject} {
			pub.Publish(s, []byte(strconv.Itoa(i)))
		}
	}
	if err := pub.FlushTimeout(secs(r.cfg.timeout)); err != nil {
		return err
	}
	syncGot := 0
	for deadline := time.Now().Add(secs(r.cfg.timeout)); syncGot < n && time.Now().Before(deadline); {
		if _, err := syncSub.NextMsg(time.Until(deadline)); err != nil {
			break
		}
		syncGot++
	}
	_, extraErr := syncSub.NextMsg(50 * time.Millisecond)
	waitUntil(secs(r.cfg.timeout), func() bool { return asyncGot.Load() >= int64(n) && lateGot.Load() >= int64(n) })
	// Let anything the server wrongly sends past the limit arrive, then count
	// once every probe the connection received has been handled.
	subNC.Flush()
	time.Sleep(grace)
	pub.FlushTimeout(secs(r.cfg.timeout))
	subNC.Flush()
	for _, s := range pr.subs {
		waitUntil(secs(r.cfg.timeout), func() bool { n, _, _ := s.Pending(); return n == 0 })
	}
	var probesGot int64
	for i := range pr.delivered {
		probesGot += pr.delivered[i].Load()
	}
	serverSent := int64(subNC.Stats().InMsgs) - probesGot
	wantSent := int64(3 * n) // the late subscription's max includes the messages it had before

	r.check(asyncGot.Load() == int64(n), "async subscription: delivered %d, want %d", asyncGot.Load(), n)
	r.check(syncGot == n, "sync subscription: NextMsg returned %d messages, want %d", syncGot, n)
	r.check(errors.Is(extraErr, nats.ErrMaxMessages) || errors.Is(extraErr, nats.ErrBadSubscription),
		"NextMsg after the limit: %v, want %v", extraErr, nats.ErrMaxMessages)
	r.check(lateGot.Load() == int64(n), "subscription limited after %d messages: delivered %d in total, want %d", before, lateGot.Load(), n)
	r.check(serverSent == wantSent, "the server sent %d messages to the subscriber connection, want %d (it must stop at each max)",
		serverSent, wantSent)
	for _, s := range []*nats.Subscription{asyncSub, syncSub, lateSub} {
		r.check(!s.IsValid(), "subscription %q still valid after its max", s.Subject)
	}
	r.checkOpen("conn", subNC, pub)
	r.checkNoAsyncErrors()
	r.set("max", n)
	r.set("async_delivered", asyncGot.Load())
	r.set("sync_delivered", syncGot)
	r.set("late_delivered", lateGot.Load())
	r.set("server_sent", serverSent)
	return nil
}

// ---------------------------------------------------------------------------
// drain

func runDrain(r *run) error {
	r.defaultInt(&r.cfg.msgs, 2000)
	n := r.cfg.msgs
	timeout := secs(r.cfg.timeout)
	closed := make(chan struct{})
	subNC, err := r.connect(r.cfg.subURLs[0], "sub", nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return err
	}
	pub, err := r.connect(r.cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	// The handler blocks on the first message until Drain has been called, so
	// that every other message is still pending in the client when it is.
	gate := make(chan struct{})
	var handled atomic.Int64
	var outOfOrder atomic.Int64
	subject := r.subject("drain")
	sub, err := subscribe(subNC, subject, "", func(m *nats.Msg) {
		if handled.Load() == 0 {
			<-gate
		}
		if i, _ := strconv.Atoi(string(m.Data)); int64(i) != handled.Load() {
			outOfOrder.Add(1)
		}
		handled.Add(1)
	})
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{subNC})
	if err != nil {
		return err
	}
	pr.close()
	for i := 0; i < n; i++ {
		pub.Publish(subject, []byte(strconv.Itoa(i)))
	}
	if err := pub.FlushTimeout(timeout); err != nil {
		return err
	}
	arrived := func() int64 {
		p, _, _ := sub.Pending()
		return int64(p) + handled.Load() // Pending includes the one blocked in the handler
	}
	r.check(waitUntil(timeout, func() bool { return arrived() >= int64(n) }),
		"only %d of %d messages reached the subscriber", arrived(), n)
	pending, _, _ := sub.Pending()
	drainErr := subNC.Drain()
	close(gate)
	start := time.Now()
	var cleanly bool
	select {
	case <-closed:
		cleanly = true
	case <-time.After(timeout + time.Second):
	}
	drainTook := time.Since(start)
	r.check(drainErr == nil, "Drain: %v", drainErr)
	r.check(cleanly, "connection not closed within %v of Drain", timeout)
	r.check(handled.Load() == int64(n) && outOfOrder.Load() == 0, "drain delivered %d of %d messages (%d pending when it started), %d out of order",
		handled.Load(), n, pending, outOfOrder.Load())
	r.check(subNC.LastError() == nil, "subscriber connection error after drain: %v", subNC.LastError())

	// Once drained and closed, the subscriber's interest is gone everywhere.
	var lastErr error
	r.check(waitUntil(timeout, func() bool {
		_, lastErr = pub.Request(subject, nil, 250*time.Millisecond)
		return errors.Is(lastErr, nats.ErrNoResponders)
	}), "after drain, requests to its subject get %v instead of ErrNoResponders", lastErr)

	// A publisher's Drain flushes what it has buffered before closing.
	r.drainPublisher(n)
	r.checkOpen("pub", pub)
	r.checkNoAsyncErrors()
	r.set("msgs", n)
	r.set("pending_at_drain", pending)
	r.set("handled", handled.Load())
	r.set("drain_ms", drainTook.Milliseconds())
	return nil
}

func (r *run) drainPublisher(n int) {
	timeout := secs(r.cfg.timeout)
	subNC, err := r.connect(r.cfg.subURLs[0], "sub2")
	if err != nil {
		r.failf("%v", err)
		return
	}
	subject := r.subject("drain", "pub")
	var got atomic.Int64
	if _, err := subscribe(subNC, subject, "", func(*nats.Msg) { got.Add(1) }); err != nil {
		r.failf("%v", err)
		return
	}
	closed := make(chan struct{})
	pub, err := r.connect(r.cfg.pubURLs[0], "pub2", nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		r.failf("%v", err)
		return
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{subNC})
	if err != nil {
		r.failf("%v", err)
		return
	}
	defer pr.close()
	for i := 0; i < n; i++ {
		pub.Publish(subject, make([]byte, 100))
	}
	r.check(pub.Drain() == nil, "publisher Drain failed")
	select {
	case <-closed:
	case <-time.After(timeout + time.Second):
		r.failf("publisher not closed within %v of Drain", timeout)
	}
	waitUntil(timeout, func() bool { return got.Load() >= int64(n) })
	time.Sleep(grace)
	r.check(got.Load() == int64(n), "after the publisher drained, %d of its %d messages arrived", got.Load(), n)
	r.set("publisher_drain_delivered", got.Load())
}

// ---------------------------------------------------------------------------
// auth

func runAuth(r *run) error {
	if r.cfg.user == "" {
		return setupf("auth needs --user and --pass")
	}
	res := map[string]any{}
	// Right credentials, as options and embedded in the URL: a round trip works.
	pub, err := r.connect(r.cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	subNC, err := r.connect(r.cfg.subURLs[0], "sub")
	if err != nil {
		return err
	}
	r.check(pub.AuthRequired(), "server INFO does not say auth_required")
	var got atomic.Int64
	subject := r.subject("auth")
	if _, err := subscribe(subNC, subject, "", func(*nats.Msg) { got.Add(1) }); err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{subNC})
	if err != nil {
		return err
	}
	defer pr.close()
	for i := 0; i < 10; i++ {
		pub.Publish(subject, []byte("x"))
	}
	pub.Flush()
	waitUntil(secs(r.cfg.timeout), func() bool { return got.Load() >= 10 })
	r.check(got.Load() == 10, "authenticated round trip: got %d of 10", got.Load())
	if u, err := urlWithUser(r.cfg.pubURLs[0], r.cfg.user, r.cfg.pass); err == nil {
		nc, err := nats.Connect(u, append([]nats.Option{nats.NoReconnect(), nats.Timeout(secs(r.cfg.timeout))},
			r.cfg.tlsOptions()...)...)
		res["url_credentials_error"] = errString(err)
		if r.check(err == nil, "credentials in the URL: %v", err) {
			r.check(nc.Flush() == nil, "flush with URL credentials")
			nc.Close()
		}
	}

	// Wrong credentials: the exact error, promptly.
	bad := []struct {
		name string
		opts []nats.Option
	}{
		{"wrong_password", []nats.Option{nats.UserInfo(r.cfg.user, r.cfg.pass+"x")}},
		{"unknown_user", []nats.Option{nats.UserInfo("natscheck-nobody", r.cfg.pass)}},
		{"no_credentials", nil},
		{"empty_password", []nats.Option{nats.UserInfo(r.cfg.user, "")}},
	}
	for _, b := range bad {
		start := time.Now()
		opts := append([]nats.Option{nats.NoReconnect(), nats.Timeout(secs(r.cfg.timeout))}, r.cfg.tlsOptions()...)
		opts = append(opts, b.opts...)
		nc, err := nats.Connect(r.cfg.subURLs[0], opts...)
		took := time.Since(start)
		res[b.name+"_error"] = errString(err)
		res[b.name+"_ms"] = took.Milliseconds()
		logf("auth: %s: %v after %v", b.name, err, took.Round(time.Millisecond))
		if err == nil {
			nc.Close()
		}
		r.check(errors.Is(err, nats.ErrAuthorization), "%s: got %v, want %q", b.name, err, nats.ErrAuthorization)
		r.check(took < 5*time.Second, "%s: rejection took %v", b.name, took)
	}
	r.checkOpen("conn", pub, subNC)
	r.checkNoAsyncErrors()
	for k, v := range res {
		r.set(k, v)
	}
	return nil
}

func urlWithUser(u, user, pass string) (string, error) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", errors.New("no scheme")
	}
	return u[:i+3] + urlEscape(user) + ":" + urlEscape(pass) + "@" + u[i+3:], nil
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// flush-rtt

func runFlushRTT(r *run) error {
	urls := append(append([]string{}, r.cfg.pubURLs...), r.cfg.subURLs...)
	seen := map[string]bool{}
	var servers []map[string]any
	for i, u := range urls {
		if seen[u] {
			continue
		}
		seen[u] = true
		// The client PINGs every 100 ms here: the server must answer each.
		nc, err := r.connect(u, fmt.Sprintf("conn-%d", i), nats.PingInterval(100*time.Millisecond), nats.MaxPingsOutstanding(3))
		if err != nil {
			return err
		}
		servers = append(servers, r.probeServer(nc, u))
	}
	r.set("servers", servers)
	if len(servers) > 0 {
		for _, k := range []string{"version", "server_id", "max_payload", "headers", "servers", "discovered_servers", "rtt_us"} {
			r.set(k, servers[0][k])
		}
	}
	r.checkNoAsyncErrors()
	return nil
}

func (r *run) probeServer(nc *nats.Conn, url string) map[string]any {
	timeout := secs(r.cfg.timeout)
	start := time.Now()
	for i := 0; i < 100; i++ {
		if err := nc.FlushTimeout(timeout); err != nil {
			r.failf("%s: flush %d: %v", url, i, err)
			break
		}
	}
	flushUs := time.Since(start).Microseconds() / 100
	// A flush behind a large burst of publishes must still complete.
	for i := 0; i < 10000; i++ {
		nc.Publish(r.subject("flush", "nobody"), make([]byte, 100))
	}
	r.check(nc.FlushTimeout(timeout) == nil, "%s: flush after 10000 publishes", url)
	rtt, err := nc.RTT()
	r.check(err == nil && rtt > 0 && rtt < timeout, "%s: RTT %v, %v", url, rtt, err)
	time.Sleep(time.Second) // ~10 client PINGs
	r.check(nc.IsConnected(), "%s: connection lost while the client was pinging: %v", url, nc.LastError())
	m := map[string]any{
		"url":                url,
		"connected_url":      nc.ConnectedUrl(),
		"connected_addr":     nc.ConnectedAddr(),
		"version":            nc.ConnectedServerVersion(),
		"server_id":          nc.ConnectedServerId(),
		"server_name":        nc.ConnectedServerName(),
		"cluster_name":       nc.ConnectedClusterName(),
		"max_payload":        nc.MaxPayload(),
		"headers":            nc.HeadersSupported(),
		"auth_required":      nc.AuthRequired(),
		"tls_required":       nc.TLSRequired(),
		"servers":            nc.Servers(),
		"discovered_servers": nc.DiscoveredServers(),
		"rtt_us":             rtt.Microseconds(),
		"flush_us":           flushUs,
	}
	r.check(m["version"] != "", "%s: INFO has no version", url)
	r.check(m["server_id"] != "", "%s: INFO has no server_id", url)
	r.check(nc.MaxPayload() > 0, "%s: INFO max_payload %d", url, nc.MaxPayload())
	r.check(nc.HeadersSupported(), "%s: INFO does not announce headers", url)
	inPool := false
	for _, s := range nc.Servers() {
		inPool = inPool || sameHostPort(s, nc.ConnectedUrl())
	}
	r.check(inPool, "%s: Servers() %v does not contain the connected URL %s", url, nc.Servers(), nc.ConnectedUrl())
	logf("flush-rtt: %s: version %s id %s name %q, max_payload %d, rtt %v, servers %v, discovered %v",
		url, m["version"], m["server_id"], m["server_name"], nc.MaxPayload(), rtt, nc.Servers(), nc.DiscoveredServers())
	return m
}

func sameHostPort(a, b string) bool {
	strip := func(s string) string {
		if i := strings.Index(s, "://"); i >= 0 {
			s = s[i+3:]
		}
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			s = s[i+1:]
		}
		return strings.TrimSuffix(s, "/")
	}
	return strip(a) == strip(b)
}

// ---------------------------------------------------------------------------
// failover

// connLog records a reconnecting connection's life: which servers it was
// connected to, disconnects and their errors, discovered servers, lame duck.
type connLog struct {
	mu          sync.Mutex
	name        string
	servers     []string
	disconnects int
	reconnects  int
	errs        []string
	discovered  int
	lameDuck    int
	events      []connEvent // timeline, for a harness that correlates losses with moves
}

// connEvent is one lame duck notice, disconnect or reconnect of a connection,
// stamped in Unix milliseconds.
type connEvent struct {
	UnixMs int64  `json:"t"`
	What   string `json:"what"`
	URL    string `json:"url,omitempty"`
}

// note records an event; l.mu must be held.
func (l *connLog) note(what, url string) {
	if len(l.events) < 1000 {
		l.events = append(l.events, connEvent{time.Now().UnixMilli(), what, url})
	}
}

func (l *connLog) options(cfg *config) []nats.Option {
	opts := []nats.Option{
		nats.MaxReconnects(1000), // bounded by the run's deadline anyway
		nats.ReconnectWait(200 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.ReconnectBufSize(32 << 20),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				return
			}
			l.mu.Lock()
			l.disconnects++
			l.note("disconnect", nc.ConnectedUrl())
			if len(l.errs) < 20 {
				l.errs = append(l.errs, errString(err))
			}
			l.mu.Unlock()
			if err != nil { // nil: our own Close at the end
				logf("%s disconnected: %v", l.name, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			l.mu.Lock()
			l.reconnects++
			l.servers = append(l.servers, nc.ConnectedUrl())
			l.note("reconnect", nc.ConnectedUrl())
			l.mu.Unlock()
			logf("%s reconnected to %s", l.name, nc.ConnectedUrl())
		}),
		nats.DiscoveredServersHandler(func(nc *nats.Conn) {
			l.mu.Lock()
			l.discovered++
			l.mu.Unlock()
			logf("%s discovered servers %v", l.name, nc.DiscoveredServers())
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			l.mu.Lock()
			l.lameDuck++
			l.note("lame_duck", nc.ConnectedUrl())
			l.mu.Unlock()
			logf("%s: server %s entered lame duck mode", l.name, nc.ConnectedUrl())
		}),
	}
	if cfg.noRandomize {
		opts = append(opts, nats.DontRandomize())
	}
	return opts
}

func (l *connLog) report(nc *nats.Conn, prefix string, r *run) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.set(prefix+"servers", l.servers)
	r.set(prefix+"disconnects", l.disconnects)
	r.set(prefix+"reconnects", l.reconnects)
	r.set(prefix+"disconnect_errors", l.errs)
	r.set(prefix+"lame_duck", l.lameDuck)
	r.set(prefix+"events", append([]connEvent{}, l.events...))
	r.set(prefix+"discovered_servers", nc.DiscoveredServers())
	r.set(prefix+"known_servers", nc.Servers())
}

// runFailover: a subscriber on --sub-url (a list, plus connect_urls discovery)
// and a publisher on --pub-url, both reconnecting. The publisher sends one
// sequenced message every 1/rate s for --duration. The harness kills servers
// after READY; then the publisher keeps going until the subscriber has received
// a message sent after the duration (it recovered) or --timeout passes.
// With --until-signal, SIGUSR1 ends the duration early (a harness that stops
// once its own fault sequence is over); with --probe-subject the subscriber
// connection also prints "PROBE <payload>" for each message on that subject,
// so a harness can check between faults that the subscriber still receives.
// The result also lists each connection's timeline (events: lame_duck,
// disconnect, reconnect in Unix ms) and, per gap, the Unix ms at which its
// first and last message were published (gap_times), so losses can be
// matched against the moments a client was between servers.
func runFailover(r *run) error {
	cfg := r.cfg
	subject := r.subject("failover")
	subLog := &connLog{name: "failover: subscriber", servers: []string{}}
	subNC, err := nats.Connect(strings.Join(cfg.subURLs, ","), r.options("failover-sub", true, subLog.options(cfg)...)...)
	if err != nil {
		return setupf("connect subscriber to %v: %w", cfg.subURLs, err)
	}
	r.track(subNC)
	subLog.servers = append(subLog.servers, subNC.ConnectedUrl())
	pubLog := &connLog{name: "failover: publisher", servers: []string{}}
	pubNC, err := nats.Connect(strings.Join(cfg.pubURLs, ","), r.options("failover-pub", true, pubLog.options(cfg)...)...)
	if err != nil {
		return setupf("connect publisher to %v: %w", cfg.pubURLs, err)
	}
	r.track(pubNC)
	pubLog.servers = append(pubLog.servers, pubNC.ConnectedUrl())

	st := newStream(1)
	var maxSeen atomic.Int64
	maxSeen.Store(-1)
	if _, err := subscribe(subNC, subject, "", func(m *nats.Msg) {
		p, seq, ok := decodePayload(m.Data, 64)
		st.add(p, seq, ok, "payload differs")
		if ok && int64(seq) > maxSeen.Load() {
			maxSeen.Store(int64(seq))
		}
	}); err != nil {
		return err
	}
	if cfg.probeSubject != "" {
		if _, err := subscribe(subNC, cfg.probeSubject, "", func(m *nats.Msg) {
			fmt.Fprintf(os.Stderr, "PROBE %s\n", m.Data)
		}); err != nil {
			return err
		}
	}
	pr, err := r.awaitInterest([]*nats.Conn{pubNC}, []*nats.Conn{subNC})
	if err != nil {
		return err
	}
	pr.close()
	subNC.Flush()
	r.set("ready_url", subNC.ConnectedUrl())
	r.set("pub_initial_url", pubNC.ConnectedUrl())
	// The harness waits for this line, then kills the subscriber's server.
	fmt.Fprintf(os.Stderr, "READY sub=%s pub=%s\n", subNC.ConnectedUrl(), pubNC.ConnectedUrl())

	var pubErrs int
	var firstPubErr string
	var stopEarly atomic.Bool
	if cfg.untilSignal {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			<-usr1
			logf("failover: SIGUSR1: ending the publishing phase")
			stopEarly.Store(true)
		}()
	}
	start := time.Now()
	seq := uint64(0)
	var pubTimes []int64 // Unix ms at which each seq was handed to the client
	publish := func() {
		pubTimes = append(pubTimes, time.Now().UnixMilli())
		if err := pubNC.Publish(subject, makePayload(0, seq, 64)); err != nil {
			if pubErrs++; pubErrs == 1 {
				firstPubErr = err.Error()
				logf("failover: publish %d: %v", seq, err)
			}
		}
		seq++
	}
	for time.Since(start) < secs(cfg.duration) && !stopEarly.Load() {
		pace(start, int(seq), cfg.rate)
		publish()
	}
	endOfDuration := seq
	// Keep publishing until a message from after the duration gets through.
	tailStart := time.Now()
	resumed := false
	for time.Since(tailStart) < secs(cfg.timeout) {
		pace(start, int(seq), cfg.rate)
		publish()
		if maxSeen.Load() >= int64(endOfDuration) {
			resumed = true
			break
		}
	}
	if resumed {
		pubNC.FlushTimeout(secs(cfg.timeout))
		sent := int64(seq)
		waitUntil(secs(cfg.timeout), func() bool { return maxSeen.Load() >= sent-1 })
	}
	time.Sleep(grace)

	lost, ranges := st.missing([]uint64{seq})
	st.mu.Lock()
	dups, reordered, bad, received := st.dups, st.reordered, st.bad, st.received
	st.mu.Unlock()
	maxGap := uint64(0)
	var gapTimes [][2]int64 // Unix ms at which the first and last message of each gap were published
	for _, g := range ranges {
		if g[1]-g[0]+1 > maxGap {
			maxGap = g[1] - g[0] + 1
		}
		if len(gapTimes) < 200 && g[1] < uint64(len(pubTimes)) {
			gapTimes = append(gapTimes, [2]int64{pubTimes[g[0]], pubTimes[g[1]]})
		}
	}
	if len(ranges) > 20 {
		ranges = ranges[:20]
	}
	subLog.report(subNC, "", r)
	pubLog.report(pubNC, "pub_", r)
	r.set("sent", seq)
	r.set("sent_in_duration", endOfDuration)
	r.set("received", received)
	r.set("lost", lost)
	r.set("gap_ranges", ranges)
	r.set("gap_times", gapTimes)
	r.set("max_gap", maxGap)
	r.set("max_gap_ms", float64(maxGap)/cfg.rate*1000)
	r.set("duplicates", dups)
	r.set("reordered", reordered)
	r.set("corrupt", bad)
	r.set("resumed", resumed)
	r.set("pub_errors", pubErrs)
	r.set("pub_first_error", firstPubErr)
	r.set("rate", cfg.rate)
	logf("failover: sent %d, received %d, lost %d (max gap %d), %d duplicates, %d reordered; subscriber servers %v, %d reconnects",
		seq, received, lost, maxGap, dups, reordered, subLog.servers, subLog.reconnects)

	r.check(dups == 0, "%d duplicate messages", dups)
	r.check(reordered == 0, "%d messages out of order", reordered)
	r.check(bad == 0, "%d corrupt messages", bad)
	r.check(resumed, "the subscriber never received a message published after the %gs duration (within %gs)", cfg.duration, cfg.timeout)
	r.check(!subNC.IsClosed() && !pubNC.IsClosed(), "a connection gave up: subscriber %v, publisher %v", subNC.LastError(), pubNC.LastError())
	if cfg.maxLost >= 0 {
		r.check(lost <= int64(cfg.maxLost), "%d messages lost (limit %d)", lost, cfg.maxLost)
	}
	subLog.mu.Lock()
	reconnects := subLog.reconnects
	subLog.mu.Unlock()
	r.check(reconnects >= cfg.minReconnects, "subscriber reconnected %d times, want at least %d", reconnects, cfg.minReconnects)
	return nil
}

// pace sleeps until message i is due at rate msgs/s after start.
func pace(start time.Time, i int, rate float64) {
	if d := time.Until(start.Add(time.Duration(float64(i) / rate * 1e9))); d > 0 {
		time.Sleep(d)
	}
}

// ---------------------------------------------------------------------------
// slowconsumer

// stallDialer wraps the client's connections so the test can stop reading from
// the socket while the client stays otherwise alive: the server then sees a
// consumer that does not keep up. (A handler that blocks only fills the
// client's own buffers; nats.go keeps reading the socket.)
type stallDialer struct{ stalled atomic.Bool }

type stallConn struct {
	net.Conn
	d *stallDialer
}

func (d *stallDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &stallConn{c, d}, nil
}

func (c *stallConn) Read(b []byte) (int, error) {
	for c.d.stalled.Load() { // bounded by the run's deadline
		time.Sleep(5 * time.Millisecond)
	}
	return c.Conn.Read(b)
}

// runSlowConsumer: a healthy and a stalled subscriber on --sub-url; the
// publisher floods (default 120000 x 1 KiB, more than the 64 MiB default
// pending limit plus socket buffers), never more than --window-mb ahead of the
// healthy one. The stalled one must be cut off (closed without a fatal -ERR,
// so it reconnects), while the healthy one gets every message in order, in
// time (--max-healthy-s), and the publisher is never disconnected.
func runSlowConsumer(r *run) error {
	cfg := r.cfg
	r.defaultInt(&cfg.msgs, 120000)
	r.defaultInt(&cfg.size, 1024)
	if cfg.size < seqHdr {
		return setupf("--size must be at least %d", seqHdr)
	}
	subject := r.subject("flood")
	healthy, err := r.connect(cfg.subURLs[0], "healthy")
	if err != nil {
		return err
	}
	dialer := &stallDialer{}
	slowLog := &connLog{name: "slowconsumer: stalled subscriber", servers: []string{}}
	var slowAsync []string
	var mu sync.Mutex
	opts := append(r.options("slow", true, slowLog.options(cfg)...),
		nats.SetCustomDialer(dialer), nats.MaxReconnects(5),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { // expected here, reported not failed
			mu.Lock()
			slowAsync = append(slowAsync, err.Error())
			mu.Unlock()
		}))
	slow, err := nats.Connect(cfg.subURLs[0], opts...)
	if err != nil {
		return setupf("connect slow subscriber: %w", err)
	}
	r.track(slow)
	slowLog.servers = append(slowLog.servers, slow.ConnectedUrl())
	st := newStream(1)
	if _, err := subscribe(healthy, subject, "", func(m *nats.Msg) {
		p, seq, ok := decodePayloadFixed(m.Data, cfg.size)
		st.add(p, seq, ok, "payload differs")
	}); err != nil {
		return err
	}
	var slowGot atomic.Int64
	if _, err := subscribe(slow, subject, "", func(*nats.Msg) { slowGot.Add(1) }); err != nil {
		return err
	}
	pub, err := r.connect(cfg.pubURLs[0], "pub")
	if err != nil {
		return err
	}
	pr, err := r.awaitInterest([]*nats.Conn{pub}, []*nats.Conn{healthy, slow})
	if err != nil {
		return err
	}
	pr.close()
	slow.Flush()

	// The flood is paced by the healthy subscriber (at most --window-mb ahead
	// of it), so that only the stalled one can legitimately exceed any bound.
	window := int64(cfg.windowMB * 1e6 / float64(cfg.size+len(subject)+32))
	dialer.stalled.Store(true)
	start := time.Now()
	buf := make([]byte, cfg.size)
	var pubErr error
	for seq := 0; seq < cfg.msgs && pubErr == nil; seq++ {
		binary.LittleEndian.PutUint32(buf, 0)
		binary.LittleEndian.PutUint64(buf[4:], uint64(seq))
		fill(buf[seqHdr:], 0, uint64(seq))
		pubErr = pub.Publish(subject, buf)
		if seq%64 == 63 && pubErr == nil {
			pubErr = keepWithin(window, int64(seq+1), st.count, healthy, secs(cfg.timeout))
		}
	}
	if pubErr == nil {
		pubErr = pub.FlushTimeout(secs(cfg.timeout))
	}
	pubElapsed := time.Since(start)
	waitUntil(secs(cfg.timeout), func() bool { return st.count() >= int64(cfg.msgs) || !healthy.IsConnected() })
	healthyElapsed := time.Since(start)
	time.Sleep(secs(cfg.stall))
	dialer.stalled.Store(false)
	// Reading again, the slow client either finds its socket closed by the
	// server (disconnect) or receives everything (it was never cut off).
	waitUntil(secs(cfg.timeout), func() bool {
		slowLog.mu.Lock()
		defer slowLog.mu.Unlock()
		return slowLog.disconnects > 0 || slowGot.Load() >= int64(cfg.msgs)
	})
	if slowLog.disconnects > 0 { // give it time to come back
		waitUntil(secs(cfg.timeout), func() bool { return slow.IsConnected() || slow.IsClosed() })
	}
	time.Sleep(grace)

	slowLog.mu.Lock()
	serverClosed := slowLog.disconnects > 0
	slowErrs := append([]string{}, slowLog.errs...)
	slowLog.mu.Unlock()
	mu.Lock()
	asyncSeen := append([]string{}, slowAsync...)
	mu.Unlock()
	slowLog.report(slow, "slow_", r)
	r.set("msgs", cfg.msgs)
	r.set("size", cfg.size)
	r.set("server_closed", serverClosed)
	r.set("slow_received", slowGot.Load())
	r.set("slow_last_error", errString(slow.LastError()))
	r.set("slow_async_errors", asyncSeen)
	r.set("slow_reconnected", slow.IsConnected())
	r.set("healthy_received", st.count())
	r.set("pub_elapsed_s", pubElapsed.Seconds())
	r.set("healthy_elapsed_s", healthyElapsed.Seconds())
	logf("slowconsumer: server closed the stalled subscriber: %v (errors %v, async %v, reconnected %v, got %d of %d); healthy got %d in %v",
		serverClosed, slowErrs, asyncSeen, slow.IsConnected(), slowGot.Load(), cfg.msgs, st.count(), healthyElapsed.Round(time.Millisecond))

	r.check(pubErr == nil, "publisher: %v", pubErr)
	st.verify(r, "healthy subscriber", []uint64{uint64(cfg.msgs)})
	r.checkOpen("healthy/publisher", healthy, pub)
	if cfg.maxHealthy > 0 {
		r.check(healthyElapsed <= secs(cfg.maxHealthy), "the healthy subscriber needed %v for the flood (limit %gs): the stalled one slowed it down",
			healthyElapsed.Round(time.Millisecond), cfg.maxHealthy)
	}
	if cfg.expectClose {
		r.check(serverClosed, "the server did not cut off the stalled subscriber (it received %d of %d)", slowGot.Load(), cfg.msgs)
	}
	if serverClosed {
		r.check(!slow.IsClosed() && slow.IsConnected(),
			"the cut-off subscriber could not reconnect (a fatal -ERR?): closed %v, last error %v", slow.IsClosed(), slow.LastError())
	}
	r.checkNoAsyncErrors()
	return nil
}

// keepWithin blocks while more than window messages are sent but not yet
// received, so a subscriber that keeps reading is never far behind.
func keepWithin(window, sent int64, received func() int64, sub *nats.Conn, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for sent-received() > window {
		if !sub.IsConnected() {
			return fmt.Errorf("the healthy subscriber lost its connection: %v", sub.LastError())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the healthy subscriber made no progress for %v", timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// decodePayloadFixed decodes a fixed-size sequenced payload (slowconsumer).
func decodePayloadFixed(b []byte, size int) (uint32, uint64, bool) {
	if len(b) != size || size < seqHdr {
		return 0, 0, false
	}
	pub, seq := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint64(b[4:])
	want := make([]byte, size-seqHdr)
	fill(want, pub, seq)
	return pub, seq, string(want) == string(b[seqHdr:])
}

// ---------------------------------------------------------------------------
// Small helpers.

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// runSubFlush: --msgs rounds of a fresh Subscribe on the subscriber's
// connection, Flush, and at once one Publish + Flush on each publisher
// (one per --pub-url). With an interest barrier (zmesh) every message arrives;
// a server whose Flush covers only itself loses some. Reports "lost".
func runSubFlush(r *run) error {
	r.defaultInt(&r.cfg.msgs, 1000)
	subNC, err := r.connect(r.cfg.subURLs[0], "sub")
	if err != nil {
		return err
	}
	var pubs []*nats.Conn
	for i, u := range r.cfg.pubURLs {
		nc, err := r.connect(u, "pub"+strconv.Itoa(i+1))
		if err != nil {
			return err
		}
		pubs = append(pubs, nc)
	}
	var got atomic.Int64
	var subs []*nats.Subscription
	var flushes []time.Duration // Subscribe's Flush: what the barrier costs
	for i := 0; i < r.cfg.msgs; i++ {
		sub, err := subscribe(subNC, r.subject("round", strconv.Itoa(i)), "", func(*nats.Msg) { got.Add(1) })
		if err != nil {
			return err
		}
		subs = append(subs, sub)
		flushStart := time.Now()
		if err := subNC.FlushTimeout(secs(r.cfg.timeout)); err != nil {
			return fmt.Errorf("flush after subscribing (round %d): %w", i, err)
		}
		flushes = append(flushes, time.Since(flushStart))
		for _, p := range pubs {
			p.Publish(sub.Subject, []byte("x"))
			if err := p.FlushTimeout(secs(r.cfg.timeout)); err != nil {
				return fmt.Errorf("publisher flush (round %d): %w", i, err)
			}
		}
	}
	want := int64(r.cfg.msgs * len(pubs))
	waitUntil(secs(r.cfg.timeout), func() bool { return got.Load() >= want })
	subNC.Flush()
	time.Sleep(grace)
	lost := want - got.Load()
	r.set("rounds", r.cfg.msgs)
	r.set("published", want)
	r.set("received", got.Load())
	r.set("lost", lost)
	sort.Slice(flushes, func(a, b int) bool { return flushes[a] < flushes[b] })
	if len(flushes) > 0 {
		r.set("flush_p50_us", flushes[len(flushes)/2].Microseconds())
		r.set("flush_p99_us", flushes[len(flushes)*99/100].Microseconds())
	}
	r.check(lost == 0, "%d of %d messages published right after Subscribe+Flush were lost", lost, want)
	r.check(got.Load() <= want, "%d messages received for %d published", got.Load(), want)
	for _, s := range subs {
		s.Unsubscribe()
	}
	return nil
}
