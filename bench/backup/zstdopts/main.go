// Command zstdopts compresses one file (an uncompressed pg_dump archive)
// with one set of klauspost zstd encoder options and prints the wall time,
// the CPU time, the output size and the decode time, so options can be
// compared on the real data before they go into pkg/backup. Run each
// variant in its own process under /usr/bin/time -v for its peak RSS:
//
//	pg_dump -Fc -Z0 -f /tmp/raw.dump ...
//	for v in default better; do /usr/bin/time -f "%M KB" go run ./bench/backup/zstdopts -in /tmp/raw.dump -level $v; done
package main

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "zstdopts:", err)
		os.Exit(1)
	}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func run() error {
	in := flag.String("in", "", "file to compress")
	level := flag.String("level", "default", "fastest, default, better, best")
	window := flag.Int("window", 0, "window size in MiB (0: the level's default)")
	conc := flag.Int("conc", 2, "encoder concurrency")
	blocks := flag.Bool("blocks", false, "WithConcurrentBlocks")
	crc := flag.Bool("crc", true, "WithEncoderCRC")
	lowmem := flag.Bool("lowmem", false, "WithLowerEncoderMem")
	allLit := flag.Bool("alllit", false, "WithAllLitEntropyCompression")
	hash := flag.Bool("hash", false, "hash the input with SHA-256 while compressing")
	decode := flag.Bool("decode", true, "time decoding the output too")
	flag.Parse()
	lv, ok := map[string]zstd.EncoderLevel{"fastest": zstd.SpeedFastest, "default": zstd.SpeedDefault,
		"better": zstd.SpeedBetterCompression, "best": zstd.SpeedBestCompression}[*level]
	if !ok {
		return fmt.Errorf("unknown level %q", *level)
	}
	opts := []zstd.EOption{zstd.WithEncoderLevel(lv), zstd.WithEncoderConcurrency(*conc),
		zstd.WithEncoderCRC(*crc), zstd.WithLowerEncoderMem(*lowmem), zstd.WithConcurrentBlocks(*blocks)}
	if *allLit {
		opts = append(opts, zstd.WithAllLitEntropyCompression(true))
	}
	if *window > 0 {
		opts = append(opts, zstd.WithWindowSize(*window<<20))
	}
	src, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.CreateTemp("", "zstdopts-*.zst")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	enc, err := zstd.NewWriter(bw, opts...)
	if err != nil {
		return err
	}
	var r io.Reader = src
	if *hash {
		r = io.TeeReader(src, sha256.New())
	}
	t, c := time.Now(), cpu()
	n, err := enc.ReadFrom(r)
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	wall, used := time.Since(t), cpu()-c
	st, _ := out.Stat()
	fmt.Printf("level=%s window=%dMiB conc=%d blocks=%t crc=%t lowmem=%t hash=%t: %d -> %.1f MB in %.1fs wall, %.1fs CPU",
		*level, *window, *conc, *blocks, *crc, *lowmem, *hash, n, float64(st.Size())/1e6, wall.Seconds(), used.Seconds())
	if *decode {
		if _, err := out.Seek(0, io.SeekStart); err != nil {
			return err
		}
		dec, err := zstd.NewReader(bufio.NewReaderSize(out, 1<<20), zstd.WithDecoderConcurrency(2), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return err
		}
		t = time.Now()
		m, err := dec.WriteTo(io.Discard)
		dec.Close()
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if m != n {
			return fmt.Errorf("decode: %d bytes, want %d", m, n)
		}
		fmt.Printf("; decode %.1fs", time.Since(t).Seconds())
	}
	fmt.Println()
	return nil
}
