// Command probe is the real-node lane's own test image (localhost/shanraq-node-probe), built by
// scripts/install-node as one static binary in an image FROM scratch: nothing is downloaded
// when a pod starts, and it runs under restricted Pod Security as a numeric non-root user with
// a read-only root file system.
//
//	probe serve [ADDRESS]       answers every HTTP request with "probe HOSTNAME" (default :8080)
//	probe get URL WANT SECONDS  resolves URL's host through the pod's resolv.conf (cluster DNS),
//	                            GETs it until the body contains WANT or SECONDS pass, prints what
//	                            it found and exits 0 only on success
//
// Go's own resolver reads /etc/resolv.conf, so a name resolves exactly as the kubelet set the
// pod's DNS up: search domains, ndots and the cluster DNS server.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve [ADDRESS] | probe get URL WANT SECONDS")
	}
	switch os.Args[1] {
	case "serve":
		address := ":8080"
		if len(os.Args) > 2 {
			address = os.Args[2]
		}
		serve(address)
	case "get":
		if len(os.Args) != 5 {
			fail("usage: probe get URL WANT SECONDS")
		}
		seconds, err := strconv.Atoi(os.Args[4])
		if err != nil {
			fail("SECONDS: " + err.Error())
		}
		get(os.Args[2], os.Args[3], time.Duration(seconds)*time.Second)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func serve(address string) {
	hostname, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "probe %s\n", hostname)
	})
	server := &http.Server{Addr: address, ReadHeaderTimeout: 5 * time.Second}
	// As PID 1 of its container the process gets no default action for SIGTERM: without a
	// handler a pod's deletion would wait out the whole grace period.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	fmt.Printf("probe: serving %s on %s\n", hostname, address)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fail(err.Error())
	}
}

func get(rawURL, want string, within time.Duration) {
	target, err := url.Parse(rawURL)
	if err != nil {
		fail(err.Error())
	}
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(within)
	var last string
	for attempt := 1; ; attempt++ {
		addresses, err := net.DefaultResolver.LookupHost(context.Background(), target.Hostname())
		if err != nil {
			last = fmt.Sprintf("resolving %s: %v", target.Hostname(), err)
		} else {
			body, err := fetch(client, rawURL)
			if err != nil {
				last = fmt.Sprintf("%s resolved to %s; GET: %v", target.Hostname(), strings.Join(addresses, ","), err)
			} else {
				last = fmt.Sprintf("%s resolved to %s; GET answered %q", target.Hostname(), strings.Join(addresses, ","), strings.TrimSpace(body))
				if strings.Contains(body, want) {
					report(fmt.Sprintf("%s (attempt %d)", last, attempt))
					return
				}
			}
		}
		if time.Now().After(deadline) {
			report(fmt.Sprintf("gave up after %d attempts: %s", attempt, last))
			os.Exit(1)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fetch(client *http.Client, rawURL string) (string, error) {
	response, err := client.Get(rawURL)
	if err != nil {
		return "", err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 4096))
	if err != nil {
		return "", err
	}
	if response.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", response.StatusCode)
	}
	return string(body), nil
}

// report prints the outcome and leaves it as the container's termination message, which the
// API shows without a kubelet log request.
func report(message string) {
	fmt.Println(message)
	_ = os.WriteFile("/dev/termination-log", []byte(message), 0o644)
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "probe: "+message)
	os.Exit(2)
}
