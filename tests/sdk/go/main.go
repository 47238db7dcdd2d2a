// Command sdkprobe drives the published Go SDKs against a collector, for
// tests/integration/test_sdk_languages.py:
//
//	sdkprobe SENTRY_DSN POSTHOG_HOST POSTHOG_KEY RELEASE ENVIRONMENT PING_URL
//
// Sentry: a panic raised through two functions of this program and recovered, a message, a
// "GET /checkout" transaction with an HTTP call to PING_URL, user "user-go". PostHog: identify, a
// $pageview of /checkout, the same panic as an exception. Flushes both; exits 0, 1 on any failure.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/posthog/posthog-go"
)

const user = "user-go"

func chargeCard(amount int) {
	panic(fmt.Errorf("card declined for amount %d", amount))
}

func checkout() {
	chargeCard(42)
}

// recoverCheckout runs checkout and hands its panic to report while the panicking frames are
// still on the stack (as sentry.Recover is used in a deferred call).
func recoverCheckout(report func(recovered any)) {
	defer func() {
		if r := recover(); r != nil {
			report(r)
		}
	}()
	checkout()
}

func run(dsn, posthogHost, posthogKey, release, environment, pingURL string) error {
	if err := sentry.Init(sentry.ClientOptions{Dsn: dsn, Release: release, Environment: environment,
		EnableTracing: true, TracesSampleRate: 1.0}); err != nil {
		return err
	}
	sentry.ConfigureScope(func(scope *sentry.Scope) { scope.SetUser(sentry.User{ID: user}) })
	recoverCheckout(func(r any) { sentry.CurrentHub().Recover(r) })
	sentry.CaptureMessage("cart is empty")

	tx := sentry.StartTransaction(context.Background(), "GET /checkout", sentry.WithOpName("http.server"))
	span := tx.StartChild("http.client", sentry.WithDescription("GET "+pingURL))
	resp, err := http.Get(pingURL)
	if err != nil {
		return err
	}
	resp.Body.Close()
	span.SetData("http.response.status_code", resp.StatusCode)
	span.Finish()
	tx.Finish()
	if !sentry.Flush(15 * time.Second) {
		return fmt.Errorf("sentry did not flush")
	}

	props := posthog.NewProperties().Set("$app_version", release).Set("$environment", environment)
	client, err := posthog.NewWithConfig(posthogKey, posthog.Config{Endpoint: posthogHost, BatchSize: 1})
	if err != nil {
		return err
	}
	if err := client.Enqueue(posthog.Identify{DistinctId: user, Properties: posthog.NewProperties().Set("plan", "pro")}); err != nil {
		return err
	}
	if err := client.Enqueue(posthog.Capture{DistinctId: user, Event: "$pageview",
		Properties: props.Merge(posthog.NewProperties().Set("$current_url", "https://shop.example/checkout"))}); err != nil {
		return err
	}
	var exception posthog.Exception
	recoverCheckout(func(r any) {
		exception = posthog.NewDefaultException(time.Now(), user, "*errors.errorString", fmt.Sprint(r))
	})
	exception.Properties = props
	if err := client.Enqueue(exception); err != nil {
		return err
	}
	return client.Close()
}

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: sdkprobe SENTRY_DSN POSTHOG_HOST POSTHOG_KEY RELEASE ENVIRONMENT PING_URL")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
