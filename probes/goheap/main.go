// Command goheap is the real-Go side of the book's release experiment.
//
// It allocates a heap of small objects, keeps a fraction of them live, runs a
// GC, gives the freed memory back to the kernel (debug.FreeOSMemory, or by
// waiting for the background scavenger), optionally makes a second allocation
// outside the Go heap (memory pressure under a cgroup limit: a burst that is
// written once and unmapped again), and finally re-allocates what it dropped.  After every phase it prints one JSON line
// with the kernel's view (/proc/self/smaps_rollup, getrusage) and the
// runtime's own (runtime.MemStats).
//
// The Go runtime reads GODEBUG (madvdontneed=0|1) itself at start-up; this
// program only reports which value it saw.
//
// Transparent huge pages are turned off for this process with
// prctl(PR_SET_THP_DISABLE) before anything is allocated, so that a first
// touch costs one fault per 4 KiB page (FACTS E10); --thp=keep leaves the
// machine's setting alone.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const osPage = 4096

// prSetTHPDisable is PR_SET_THP_DISABLE from <linux/prctl.h>.
const prSetTHPDisable = 41

type sample struct {
	Phase            string  `json:"phase"`
	T                float64 `json:"t"`
	ElapsedNS        int64   `json:"elapsed_ns"`
	RSSBytes         int64   `json:"rss_bytes"`
	AnonBytes        int64   `json:"anon_bytes"`
	LazyFreeBytes    int64   `json:"lazyfree_bytes"`
	AnonHugeBytes    int64   `json:"anon_huge_bytes"`
	PressureRSSBytes int64   `json:"pressure_rss_bytes"`
	MinFlt           int64   `json:"minflt"`
	MinFltDelta      int64   `json:"minflt_delta"`
	MajFlt           int64   `json:"majflt"`
	HeapInuse        uint64  `json:"heap_inuse"`
	HeapIdle         uint64  `json:"heap_idle"`
	HeapReleased     uint64  `json:"heap_released"`
	HeapSys          uint64  `json:"heap_sys"`
	HeapAlloc        uint64  `json:"heap_alloc"`
	Sys              uint64  `json:"sys"`
	NextGC           uint64  `json:"next_gc"`
	NumGC            uint32  `json:"num_gc"`
}

type config struct {
	Heap      int64   `json:"heap"`
	Object    int64   `json:"object"`
	Liveness  float64 `json:"liveness"`
	Layout    string  `json:"layout"`
	Release   string  `json:"release"`
	Wait      float64 `json:"wait"`
	Settle    bool    `json:"settle"`
	Pressure  int64   `json:"pressure"`
	THP       string  `json:"thp"`
	GODEBUG   string  `json:"godebug"`
	GoVersion string  `json:"go_version"`
	Pid       int     `json:"pid"`
	PageSize  int     `json:"page_size"`
}

var (
	start        = time.Now()
	lastMinflt   int64
	pressureAddr uintptr
	out          = bufio.NewWriter(os.Stdout)
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "goheap: "+format+"\n", args...)
	os.Exit(2)
}

func parseSize(name, s string) int64 {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		die("--%s must be a size like 256MiB, got %q", name, s)
	}
	return n * mult
}

// smaps reads the process totals from smaps_rollup and, when a pressure
// region exists, its own Rss from smaps (the region sits between PROT_NONE
// guard pages, so its VMA never merges with a neighbour: FACTS E5).
func smaps() (rss, anon, lazy, huge, pressureRSS int64) {
	data, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		die("read smaps_rollup: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			rss = v << 10
		case "Anonymous:":
			anon = v << 10
		case "LazyFree:":
			lazy = v << 10
		case "AnonHugePages:":
			huge = v << 10
		}
	}
	if pressureAddr != 0 {
		data, err := os.ReadFile("/proc/self/smaps")
		if err != nil {
			die("read smaps: %v", err)
		}
		head := fmt.Sprintf("%x-", pressureAddr)
		in := false
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
				in = strings.HasPrefix(f[0], head)
				continue
			}
			if in && f[0] == "Rss:" && len(f) > 1 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				pressureRSS = v << 10
			}
		}
	}
	return
}

func emit(phase string, elapsed time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		die("getrusage: %v", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := sample{Phase: phase, T: time.Since(start).Seconds(), ElapsedNS: elapsed.Nanoseconds()}
	s.RSSBytes, s.AnonBytes, s.LazyFreeBytes, s.AnonHugeBytes, s.PressureRSSBytes = smaps()
	s.MinFlt, s.MajFlt = ru.Minflt, ru.Majflt
	s.MinFltDelta, lastMinflt = ru.Minflt-lastMinflt, ru.Minflt
	s.HeapInuse, s.HeapIdle, s.HeapReleased, s.HeapSys = ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.HeapSys
	s.HeapAlloc, s.Sys, s.NextGC, s.NumGC = ms.HeapAlloc, ms.Sys, ms.NextGC, ms.NumGC
	b, _ := json.Marshal(s)
	out.Write(b)
	out.WriteByte('\n')
	out.Flush()
}

// fill writes one byte in every 4 KiB page of b, so each page is resident.
// (The runtime does not zero memory fresh from the OS, so without this the
// pages would never be touched.)
func fill(b []byte) {
	for i := 0; i < len(b); i += osPage {
		b[i] = 1
	}
	b[len(b)-1] = 1
}

// kept reports whether object i of n stays live.  "interleaved" spreads the
// survivors evenly (object i survives when floor((i+1)*f) > floor(i*f)),
// "prefix" keeps the first f*n objects.
func kept(i, n int, f float64, layout string) bool {
	if layout == "prefix" {
		return i < int(f*float64(n)+0.5)
	}
	return int(float64(i+1)*f) > int(float64(i)*f)
}

func main() {
	cfg := config{GODEBUG: os.Getenv("GODEBUG"), GoVersion: runtime.Version(), Pid: os.Getpid(), PageSize: os.Getpagesize()}
	heap := flag.String("heap", "256MiB", "bytes of objects to allocate")
	object := flag.String("object", "8KiB", "size of each object")
	flag.Float64Var(&cfg.Liveness, "liveness", 0.25, "fraction of objects kept live, in [0, 1]")
	flag.StringVar(&cfg.Layout, "layout", "interleaved", "which objects stay live: interleaved|prefix")
	flag.StringVar(&cfg.Release, "release", "freeosmemory", "how memory goes back: freeosmemory|scavenger")
	flag.Float64Var(&cfg.Wait, "wait", 5, "seconds to watch the background scavenger at most (--release scavenger)")
	flag.BoolVar(&cfg.Settle, "settle", false, "stop watching once the scavenger released half of the dropped heap and then nothing for 1 s")
	pressure := flag.String("pressure", "0", "bytes of a second allocation (outside the Go heap), written, then unmapped before re-allocating")
	flag.StringVar(&cfg.THP, "thp", "disable", "disable: prctl(PR_SET_THP_DISABLE); keep: machine setting")
	waitStdin := flag.Bool("wait-stdin", false, "print a 'ready' line and wait for one line on stdin before allocating")
	flag.Parse()
	cfg.Heap, cfg.Object, cfg.Pressure = parseSize("heap", *heap), parseSize("object", *object), parseSize("pressure", *pressure)
	if cfg.Liveness < 0 || cfg.Liveness > 1 {
		die("--liveness must be in [0, 1], got %v", cfg.Liveness)
	}
	if cfg.Object < 16 || cfg.Heap < cfg.Object {
		die("--object must be >= 16 bytes and <= --heap")
	}
	if cfg.Layout != "interleaved" && cfg.Layout != "prefix" {
		die("--layout must be interleaved or prefix, got %q", cfg.Layout)
	}
	if cfg.Release != "freeosmemory" && cfg.Release != "scavenger" {
		die("--release must be freeosmemory or scavenger, got %q", cfg.Release)
	}
	switch cfg.THP {
	case "disable":
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetTHPDisable, 1, 0, 0, 0, 0); e != 0 {
			die("prctl(PR_SET_THP_DISABLE): %v", e)
		}
	case "keep":
	default:
		die("--thp must be disable or keep, got %q", cfg.THP)
	}
	if *waitStdin {
		fmt.Fprintf(out, "{\"ready\": %d}\n", cfg.Pid)
		out.Flush()
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			die("waiting for stdin: %v", err)
		}
	}
	b, _ := json.Marshal(map[string]config{"config": cfg})
	out.Write(b)
	out.WriteByte('\n')

	n := int(cfg.Heap / cfg.Object)
	objs := make([][]byte, n)
	runtime.GC()
	emit("start", 0)

	t0 := time.Now()
	for i := range objs {
		objs[i] = make([]byte, cfg.Object)
		fill(objs[i])
	}
	// A GC with everything still live fixes the pacer's history (the last
	// heap goal and heap-in-use the scavenger's goal is computed from), so
	// that runs are repeatable whatever GCs the allocation triggered.
	runtime.GC()
	emit("allocate", time.Since(t0))

	dropped := 0
	for i := range objs {
		if !kept(i, n, cfg.Liveness, cfg.Layout) {
			objs[i] = nil
			dropped++
		}
	}
	t0 = time.Now()
	runtime.GC()
	emit("gc", time.Since(t0))

	t0 = time.Now()
	if cfg.Release == "freeosmemory" {
		debug.FreeOSMemory()
		emit("release", time.Since(t0))
	} else {
		// Watch the background scavenger: no allocation happens meanwhile.
		// When it first wakes in an idle program is up to sysmon (1-8 s
		// here), so with --settle the watch ends once the scavenger has
		// released at least half of what was dropped and then nothing
		// more for a second; --wait bounds it in any case.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base, last, lastChange := ms.HeapReleased, ms.HeapReleased, time.Now()
		deadline := t0.Add(time.Duration(cfg.Wait * float64(time.Second)))
		for time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			emit("release", time.Since(t0))
			runtime.ReadMemStats(&ms)
			if ms.HeapReleased != last {
				last, lastChange = ms.HeapReleased, time.Now()
			}
			if cfg.Settle && int64(last-base) >= int64(dropped)*cfg.Object/2 && time.Since(lastChange) > time.Second {
				break
			}
		}
	}

	if cfg.Pressure > 0 {
		// A second allocation outside the Go heap, between two PROT_NONE
		// guard pages, written once per page and held to the end.
		t0 = time.Now()
		total := int(cfg.Pressure) + 2*osPage
		mem, err := syscall.Mmap(-1, 0, total, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			die("mmap pressure: %v", err)
		}
		body := mem[osPage : osPage+int(cfg.Pressure)]
		if err := syscall.Mprotect(body, syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			die("mprotect pressure: %v", err)
		}
		pressureAddr = uintptr(unsafePointer(body))
		fill(body)
		emit("pressure", time.Since(t0))
		// The burst ends before the Go heap grows back, so what the
		// re-allocation pays for is only what reclaim took from the heap.
		if err := syscall.Munmap(mem); err != nil {
			die("munmap pressure: %v", err)
		}
		pressureAddr = 0
	}

	t0 = time.Now()
	for i := range objs {
		if objs[i] == nil {
			objs[i] = make([]byte, cfg.Object)
			fill(objs[i])
		}
	}
	emit("reallocate", time.Since(t0))
	runtime.KeepAlive(objs)
}
