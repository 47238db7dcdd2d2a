package shop;

import com.posthog.server.PostHog;
import com.posthog.server.PostHogCaptureOptions;
import com.posthog.server.PostHogConfig;
import com.posthog.server.PostHogInterface;
import io.sentry.ISpan;
import io.sentry.ITransaction;
import io.sentry.Sentry;
import io.sentry.SentryLevel;
import io.sentry.protocol.User;
import java.net.HttpURLConnection;
import java.net.URL;
import java.util.Map;

/**
 * Drives the published JVM SDKs against a collector, for tests/integration/test_sdk_languages.py:
 * {@code java -cp ... shop.Probe SENTRY_DSN POSTHOG_HOST POSTHOG_KEY RELEASE ENVIRONMENT PING_URL}.
 * Sentry: an exception thrown through two methods of this class, a message, a "GET /checkout"
 * transaction with an HTTP call to PING_URL, user "user-java". PostHog: identify, a $pageview of
 * /checkout, the same exception. Flushes both and returns from main (no System.exit: posthog-server
 * sends its queue on a thread of its own after close()); exits 1 on any failure.
 */
public final class Probe {
    private static final String USER = "user-java";

    static void chargeCard(int amount) {
        throw new IllegalStateException("card declined for amount " + amount);
    }

    static void checkout() {
        chargeCard(42);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: shop.Probe SENTRY_DSN POSTHOG_HOST POSTHOG_KEY RELEASE ENVIRONMENT PING_URL");
            System.exit(2);
        }
        String release = args[3], environment = args[4], pingUrl = args[5];
        Sentry.init(options -> {
            options.setDsn(args[0]);
            options.setRelease(release);
            options.setEnvironment(environment);
            options.setTracesSampleRate(1.0);
        });
        User user = new User();
        user.setId(USER);
        Sentry.setUser(user);
        try {
            checkout();
        } catch (IllegalStateException e) {
            Sentry.captureException(e);
        }
        Sentry.captureMessage("cart is empty", SentryLevel.WARNING);
        ITransaction tx = Sentry.startTransaction("GET /checkout", "http.server");
        ISpan span = tx.startChild("http.client", "GET " + pingUrl);
        HttpURLConnection conn = (HttpURLConnection) new URL(pingUrl).openConnection();
        span.setData("http.response.status_code", conn.getResponseCode());
        conn.getInputStream().readAllBytes();
        conn.disconnect();
        span.finish();
        tx.finish();
        Sentry.flush(15000);
        Sentry.close();

        PostHogInterface posthog = PostHog.with(new PostHogConfig.Builder(args[2]).host(args[1]).flushAt(1).build());
        Map<String, Object> props = Map.of("$app_version", release, "$environment", environment);
        posthog.identify(USER, Map.of("plan", "pro"));
        posthog.capture(USER, "$pageview", new PostHogCaptureOptions.Builder().properties(props)
                .property("$current_url", "https://shop.example/checkout").build());
        try {
            checkout();
        } catch (IllegalStateException e) {
            posthog.captureException(e, USER, props);
        }
        posthog.flush();
        // flush() and close() only start the sending; the JVM exits once the SDK's sender thread is done
        posthog.close();
    }
}
