//! Rules for `telemetry` (the OTLP endpoint and headers) and `admin` (its listen address).

use crate::model::Config;
use crate::path;

use super::Validator;

impl Validator<'_> {
    pub(super) fn telemetry(&mut self, config: &Config) {
        if let Some(admin) = &config.admin
            && admin.listen_addr().is_err()
        {
            self.at_value(
                "admin.listen",
                format!(
                    "found \"{}\", expected an IP address and port such as \"127.0.0.1:9090\" or \"[::1]:9090\"",
                    admin.listen
                ),
            );
        }
        let Some(telemetry) = &config.telemetry else {
            return;
        };
        if telemetry
            .service_name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty())
        {
            self.at_value(
                "telemetry.service_name",
                "found an empty service name, expected a name such as \"gatehouse\"".into(),
            );
        }
        let Some(otlp) = &telemetry.otlp else { return };
        let endpoint = &otlp.endpoint;
        match url::Url::parse(endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(_) | Err(_) => self.at_value(
                "telemetry.otlp.endpoint",
                format!(
                    "found \"{endpoint}\", expected an http(s) URL of an OTLP collector such as \"http://127.0.0.1:4318\""
                ),
            ),
        }
        for (name, value) in &otlp.headers {
            let p = path::key("telemetry.otlp.headers", name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.at_key(
                    &p,
                    format!("found header name \"{name}\", expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"),
                );
            }
            if http::HeaderValue::from_str(value).is_err() {
                self.at_value(
                    &p,
                    "found a header value with control characters or line breaks, expected printable text".into(),
                );
            }
        }
        self.positive("telemetry.otlp.export_interval", otlp.export_interval.get());
    }
}
