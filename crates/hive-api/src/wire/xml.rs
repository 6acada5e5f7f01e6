//! XML response writer for the query protocol (IAM, STS) and the EC2 protocol.
//!
//! Handlers describe a response with a few calls and never write markup by hand:
//!
//! ```
//! use hive_api::wire::{ServiceId, xml};
//! let body = xml::query_response(ServiceId::Sts, "GetCallerIdentity", "req-1", |r| {
//!     r.text("UserId", "AIDAEXAMPLE")
//!         .text("Account", "000000000000")
//!         .text("Arn", "arn:aws:iam::000000000000:user/admin");
//! });
//! assert!(body.contains("<GetCallerIdentityResult><UserId>AIDAEXAMPLE</UserId>"));
//! ```
//!
//! Lists are written as `<member>` (query) or `<item>` (EC2) automatically; text is escaped;
//! characters XML 1.0 cannot carry are replaced by U+FFFD so the body always parses.

use std::fmt::Display;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use super::{Protocol, ServiceId};

/// `2024-01-02T03:04:05Z`: how IAM and STS write timestamps.
const QUERY_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
/// `2024-01-02T03:04:05.000Z`: how EC2 writes timestamps.
const EC2_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A timestamp in ISO 8601 as the protocol writes it, always in UTC.
pub fn timestamp(t: OffsetDateTime, protocol: Protocol) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = match protocol {
        Protocol::Query => QUERY_TIME,
        Protocol::Ec2 => EC2_TIME,
    };
    // Formatting a UTC date with these fixed descriptions only fails for years beyond 9999,
    // which no clock produces; fall back to the RFC 3339 form rather than panic.
    t.format(format).unwrap_or_else(|_| t.to_string())
}

/// Append `text` to `out` with XML escaping.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Keep CR through parsers that normalise line ends.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            // Not allowed in XML 1.0, even escaped.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `text` with XML escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Writes the elements of one response body.
#[derive(Debug)]
pub struct XmlWriter {
    buf: String,
    protocol: Protocol,
}

impl XmlWriter {
    /// An empty writer for `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            buf: String::with_capacity(512),
            protocol,
        }
    }

    /// The protocol this writer follows.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The markup written so far.
    pub fn finish(self) -> String {
        self.buf
    }

    fn open(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// `<name>escaped value</name>`.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        self.open(name);
        escape_into(&mut self.buf, value);
        self.close(name);
        self
    }

    /// [`XmlWriter::text`] when `value` is `Some`, nothing otherwise (AWS omits absent fields).
    pub fn opt_text(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.text(name, v);
        }
        self
    }

    /// `<name>value</name>` for numbers and other `Display` values.
    pub fn display(&mut self, name: &str, value: impl Display) -> &mut Self {
        self.text(name, &value.to_string())
    }

    /// `<name>true|false</name>`.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.text(name, if value { "true" } else { "false" })
    }

    /// `<name>2024-01-02T03:04:05Z</name>` in the protocol's timestamp style.
    pub fn time(&mut self, name: &str, value: OffsetDateTime) -> &mut Self {
        let ts = timestamp(value, self.protocol);
        self.text(name, &ts)
    }

    /// A nested structure: `<name>...</name>`.
    pub fn node(&mut self, name: &str, body: impl FnOnce(&mut XmlWriter)) -> &mut Self {
        self.open(name);
        body(self);
        self.close(name);
        self
    }

    /// A list of structures: `<name><member>...</member>...</name>` (query) or
    /// `<name><item>...</item>...</name>` (EC2).
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut XmlWriter, T),
    ) -> &mut Self {
        let element = self.list_element();
        self.open(name);
        for item in items {
            self.open(element);
            each(self, item);
            self.close(element);
        }
        self.close(name);
        self
    }

    /// A list of strings: `<name><member>a</member><member>b</member></name>`.
    pub fn text_list<'a>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        let element = self.list_element();
        self.open(name);
        for item in items {
            self.text(element, item);
        }
        self.close(name);
        self
    }

    /// IAM pagination: `<IsTruncated>` and, when truncated, `<Marker>`.
    pub fn pagination(&mut self, marker: Option<&str>) -> &mut Self {
        self.bool("IsTruncated", marker.is_some());
        self.opt_text("Marker", marker)
    }

    /// EC2 pagination: `<nextToken>` when there are more results.
    pub fn next_token(&mut self, token: Option<&str>) -> &mut Self {
        self.opt_text("nextToken", token)
    }

    fn list_element(&self) -> &'static str {
        match self.protocol {
            Protocol::Query => "member",
            Protocol::Ec2 => "item",
        }
    }
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// A query-protocol success body:
/// `<{action}Response xmlns=ns><{action}Result>...</{action}Result><ResponseMetadata>
/// <RequestId>id</RequestId></ResponseMetadata></{action}Response>`.
pub fn query_response(
    service: ServiceId,
    action: &str,
    request_id: &str,
    result: impl FnOnce(&mut XmlWriter),
) -> String {
    query_body(service, action, request_id, Some(result))
}

/// A query-protocol success body without a result element, for actions that return nothing
/// (`DeleteUser`, `AttachUserPolicy`, ...).
pub fn query_empty_response(service: ServiceId, action: &str, request_id: &str) -> String {
    query_body(service, action, request_id, None::<fn(&mut XmlWriter)>)
}

fn query_body(
    service: ServiceId,
    action: &str,
    request_id: &str,
    result: Option<impl FnOnce(&mut XmlWriter)>,
) -> String {
    let mut w = XmlWriter::new(Protocol::Query);
    w.buf.push_str(XML_DECL);
    w.buf.push('<');
    w.buf.push_str(action);
    w.buf.push_str("Response xmlns=\"");
    w.buf.push_str(service.namespace());
    w.buf.push_str("\">");
    if let Some(result) = result {
        let result_name = format!("{action}Result");
        w.node(&result_name, result);
    }
    w.node("ResponseMetadata", |w| {
        w.text("RequestId", request_id);
    });
    w.close(&format!("{action}Response"));
    w.finish()
}

/// An EC2-protocol success body:
/// `<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>id</requestId>
/// ...</{action}Response>`.
pub fn ec2_response(action: &str, request_id: &str, body: impl FnOnce(&mut XmlWriter)) -> String {
    let mut w = XmlWriter::new(Protocol::Ec2);
    w.buf.push_str(XML_DECL);
    w.buf.push('<');
    w.buf.push_str(action);
    w.buf.push_str("Response xmlns=\"");
    w.buf.push_str(ServiceId::Ec2.namespace());
    w.buf.push_str("\">");
    w.text("requestId", request_id);
    body(&mut w);
    w.close(&format!("{action}Response"));
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn query_response_shape() {
        let body = query_response(ServiceId::Iam, "ListUsers", "rid", |r| {
            r.list("Users", ["alice", "b&b"], |w, name| {
                w.text("UserName", name).text("Path", "/");
            })
            .pagination(Some("m1"));
        });
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ListUsersResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
             <ListUsersResult><Users>\
             <member><UserName>alice</UserName><Path>/</Path></member>\
             <member><UserName>b&amp;b</UserName><Path>/</Path></member>\
             </Users><IsTruncated>true</IsTruncated><Marker>m1</Marker></ListUsersResult>\
             <ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></ListUsersResponse>"
        );
    }

    #[test]
    fn empty_query_response_has_no_result() {
        let body = query_empty_response(ServiceId::Iam, "DeleteUser", "r");
        assert!(body.ends_with(
            "<DeleteUserResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeleteUserResponse>"
        ));
    }

    #[test]
    fn ec2_response_shape() {
        let body = ec2_response("DescribeVpcs", "r", |w| {
            w.list("vpcSet", ["vpc-1"], |w, id| {
                w.text("vpcId", id).text_list("tagSet", []);
            })
            .next_token(None);
        });
        assert!(body.ends_with(
            "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r</requestId><vpcSet><item><vpcId>vpc-1</vpcId><tagSet></tagSet></item>\
             </vpcSet></DescribeVpcsResponse>"
        ));
    }

    #[test]
    fn timestamps_follow_each_protocol() {
        let t = datetime!(2024-02-03 04:05:06.789 +02:00);
        assert_eq!(timestamp(t, Protocol::Query), "2024-02-03T02:05:06Z");
        assert_eq!(timestamp(t, Protocol::Ec2), "2024-02-03T02:05:06.789Z");
    }

    #[test]
    fn escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("a\u{0}b\r\n\tc"), "a\u{FFFD}b&#13;\n\tc");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn scalars_and_nodes() {
        let mut w = XmlWriter::new(Protocol::Query);
        w.display("MaxItems", 100)
            .bool("IsDefault", false)
            .opt_text("Absent", None)
            .node("Credentials", |w| {
                w.text("AccessKeyId", "ASIA");
            })
            .text_list("Names", ["a", "b"]);
        assert_eq!(
            w.finish(),
            "<MaxItems>100</MaxItems><IsDefault>false</IsDefault>\
             <Credentials><AccessKeyId>ASIA</AccessKeyId></Credentials>\
             <Names><member>a</member><member>b</member></Names>"
        );
    }
}
