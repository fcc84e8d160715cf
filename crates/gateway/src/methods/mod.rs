//! The authorization table: every JSON-RPC method a client can send, in both protocol eras and
//! through every front door (Streamable HTTP, legacy HTTP+SSE, GET streams,
//! `subscriptions/listen`), mapped to what is decided for it.
//!
//! Nothing reaches a member except through a [`Decided`], and only this module creates one:
//! [`authorize`] for a client's request, [`Decided::catalog`] for the gateway's own list
//! fetches. The member-facing functions of [`crate::backend::Backend`] take a `&Decided` and
//! send exactly the method it names, so a method this table does not know cannot reach a
//! server by construction (test: `only_the_table_creates_decisions`).

mod decide;

use std::borrow::Cow;

use gatehouse_wire::{Era, MessageKind};

pub use decide::{Resolved, Route, authorize, authorize_notification};
pub(crate) use decide::{decide_read, listen_subscribe, unsubscribe};

use crate::catalog::ListKind;

/// Which protocol eras a method exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eras {
    /// 2024-11-05 … 2025-11-25 only.
    Handshake,
    /// 2026-07-28 only.
    Stateless,
    /// Both.
    Both,
}

impl Eras {
    /// True when the method exists in `era`.
    pub fn includes(self, era: Era) -> bool {
        match self {
            Eras::Both => true,
            Eras::Handshake => era == Era::Handshake,
            Eras::Stateless => era == Era::Stateless,
        }
    }
}

/// What is decided for a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// One use of one item, decided by policy each time.
    Item(ItemMethod),
    /// A list, filtered to the items the caller may use.
    List(ListKind),
    /// About the session or connection itself; names no item. Answered by the gateway or, for
    /// notifications, relayed to every member.
    Session(SessionMethod),
    /// An object bound to the caller that created it.
    Task(TaskMethod),
    /// A subscription to resource updates: each URI is decided as `read_resource` when the
    /// subscription is made and again when policies change.
    Subscription(SubscriptionMethod),
    /// A method of an extension the gateway cannot decide per item: refused under policies,
    /// relayed to a sole member without them.
    Undecidable,
}

/// Methods that use one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemMethod {
    /// `tools/call` (`call_tool`).
    CallTool,
    /// `prompts/get` (`get_prompt`).
    GetPrompt,
    /// `resources/read` (`read_resource`).
    ReadResource,
    /// `completion/complete` (`complete` on the prompt or resource it names).
    Complete,
    /// `skills/get` (SEP-2640): `read_resource` on the skill's `SKILL.md` URI.
    GetSkill,
    /// `resources/directory/read` (SEP-2640): `read_resource` on the directory's URI.
    ReadDirectory,
}

/// Session-level methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMethod {
    /// `initialize`: opens a handshake-era session.
    Initialize,
    /// `ping`.
    Ping,
    /// `server/discover`.
    Discover,
    /// `logging/setLevel`: the session's log level, relayed to every member.
    SetLogLevel,
    /// `notifications/initialized`: consumed by the gateway.
    Initialized,
    /// `notifications/cancelled`: cancels one of the caller's own requests.
    Cancelled,
    /// `notifications/roots/list_changed`: relayed to every member.
    RootsListChanged,
    /// `notifications/progress` from the client (about a server→client request): relayed.
    Progress,
}

/// Methods on tasks (2025-11-25 experimental tasks and the SEP-2663 extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMethod {
    /// `tasks/get`.
    Get,
    /// `tasks/result` (2025-11-25).
    Result,
    /// `tasks/list` (2025-11-25): only the caller's own tasks.
    List,
    /// `tasks/cancel`.
    Cancel,
    /// `tasks/update` (SEP-2663: input for a task).
    Update,
}

/// Methods on resource subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionMethod {
    /// `resources/subscribe` (handshake era).
    Subscribe,
    /// `resources/unsubscribe` (handshake era): releases only the caller's own subscription.
    Unsubscribe,
    /// `subscriptions/listen` (2026-07-28).
    Listen,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The JSON-RPC method.
    pub method: &'static str,
    /// A request (has an id) or a notification.
    pub kind: MessageKind,
    /// The eras it exists in.
    pub eras: Eras,
    /// What is decided for it.
    pub handling: Handling,
}

const fn request(method: &'static str, eras: Eras, handling: Handling) -> Entry {
    Entry {
        method,
        kind: MessageKind::Request,
        eras,
        handling,
    }
}

const fn notification(method: &'static str, eras: Eras, handling: Handling) -> Entry {
    Entry {
        method,
        kind: MessageKind::Notification,
        eras,
        handling,
    }
}

use Handling as H;

/// Every method a client can send. A method missing here is unknown: refused under policies,
/// relayed to a sole member without them (invariant 6: the gateway never drops what it does
/// not understand unless it could reach an item by another name).
pub const TABLE: &[Entry] = &[
    request(
        "initialize",
        Eras::Handshake,
        H::Session(SessionMethod::Initialize),
    ),
    request("ping", Eras::Handshake, H::Session(SessionMethod::Ping)),
    request(
        "server/discover",
        Eras::Both,
        H::Session(SessionMethod::Discover),
    ),
    request(
        "logging/setLevel",
        Eras::Handshake,
        H::Session(SessionMethod::SetLogLevel),
    ),
    request("tools/list", Eras::Both, H::List(ListKind::Tools)),
    request("prompts/list", Eras::Both, H::List(ListKind::Prompts)),
    request("resources/list", Eras::Both, H::List(ListKind::Resources)),
    request(
        "resources/templates/list",
        Eras::Both,
        H::List(ListKind::ResourceTemplates),
    ),
    request("tools/call", Eras::Both, H::Item(ItemMethod::CallTool)),
    request("prompts/get", Eras::Both, H::Item(ItemMethod::GetPrompt)),
    request(
        "resources/read",
        Eras::Both,
        H::Item(ItemMethod::ReadResource),
    ),
    request(
        "completion/complete",
        Eras::Both,
        H::Item(ItemMethod::Complete),
    ),
    request("skills/get", Eras::Both, H::Item(ItemMethod::GetSkill)),
    request(
        "resources/directory/read",
        Eras::Both,
        H::Item(ItemMethod::ReadDirectory),
    ),
    request("skills/list", Eras::Both, H::Undecidable),
    request(
        "resources/subscribe",
        Eras::Handshake,
        H::Subscription(SubscriptionMethod::Subscribe),
    ),
    request(
        "resources/unsubscribe",
        Eras::Handshake,
        H::Subscription(SubscriptionMethod::Unsubscribe),
    ),
    request(
        "subscriptions/listen",
        Eras::Stateless,
        H::Subscription(SubscriptionMethod::Listen),
    ),
    request("tasks/get", Eras::Both, H::Task(TaskMethod::Get)),
    request("tasks/result", Eras::Handshake, H::Task(TaskMethod::Result)),
    request("tasks/list", Eras::Handshake, H::Task(TaskMethod::List)),
    request("tasks/cancel", Eras::Both, H::Task(TaskMethod::Cancel)),
    request("tasks/update", Eras::Both, H::Task(TaskMethod::Update)),
    notification(
        "notifications/initialized",
        Eras::Handshake,
        H::Session(SessionMethod::Initialized),
    ),
    notification(
        "notifications/cancelled",
        Eras::Both,
        H::Session(SessionMethod::Cancelled),
    ),
    notification(
        "notifications/roots/list_changed",
        Eras::Handshake,
        H::Session(SessionMethod::RootsListChanged),
    ),
    notification(
        "notifications/progress",
        Eras::Both,
        H::Session(SessionMethod::Progress),
    ),
    // About a task the client runs for a server (2025-11-25 bidirectional tasks): no member
    // can be told apart, so it is relayed only where unknown methods are.
    notification(
        "notifications/tasks/status",
        Eras::Handshake,
        H::Undecidable,
    ),
];

/// What the table says of `method` sent as `kind` in `era`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The method exists in this era.
    Known(Handling),
    /// The method exists, but only in the other era (a 2026-07-28 client gets `-32601`).
    OtherEra,
    /// Not in the table.
    Unknown,
}

/// Looks `method` up.
pub fn lookup(method: &str, kind: MessageKind, era: Era) -> Lookup {
    let mut other_era = false;
    for e in TABLE
        .iter()
        .filter(|e| e.method == method && e.kind == kind)
    {
        if e.eras.includes(era) {
            return Lookup::Known(e.handling);
        }
        other_era = true;
    }
    if other_era {
        Lookup::OtherEra
    } else {
        Lookup::Unknown
    }
}

/// Permission to send one method to members, created only by this module. It names the
/// method and the member(s); the backend sends exactly that method.
#[derive(Debug)]
pub struct Decided {
    /// A method of the table; any other text only when a sole member without policies gets a
    /// method the gateway does not know (invariant 6).
    method: Cow<'static, str>,
    target: Target,
}

/// Whom a [`Decided`] lets the gateway reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The member at this index of the virtual server.
    Member(usize),
    /// Every member (session-level methods and notifications).
    Members,
    /// The server whose list the gateway's catalog fetches (its own traffic).
    Catalog,
}

impl Decided {
    /// The method to send.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whom it may reach.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The gateway's own fetch of a server's list of `kind`, for its catalog. Its results reach
    /// callers only through the filtered lists of [`Handling::List`].
    pub fn catalog(kind: ListKind) -> Decided {
        Decided {
            method: Cow::Borrowed(kind.method()),
            target: Target::Catalog,
        }
    }

    fn member(method: &'static str, member: usize) -> Decided {
        Decided {
            method: Cow::Borrowed(method),
            target: Target::Member(member),
        }
    }

    fn members(method: &'static str) -> Decided {
        Decided {
            method: Cow::Borrowed(method),
            target: Target::Members,
        }
    }
}

/// The table as Markdown, for `docs/reference/methods.md` (generated from [`TABLE`]; a test
/// keeps the file in step).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Methods and what is decided for them\n\n\
         Generated from the gateway's authorization table (`crates/gateway/src/methods/mod.rs`); \
         `GATEHOUSE_BLESS=1 cargo test -p gatehouse-gateway methods` rewrites it.\n\n\
         Every JSON-RPC method a client can send, on every front door (Streamable HTTP, legacy \
         HTTP+SSE, GET streams, `subscriptions/listen`). A method not listed here is unknown: \
         under `policies` it is refused with `-32601` (it could reach an item by another name); \
         without them it is relayed to a virtual server's sole member. A method listed for one \
         era only gets `-32601` in the other.\n\n\
         | method | kind | eras | decided as |\n|---|---|---|---|\n",
    );
    for e in TABLE {
        let kind = match e.kind {
            MessageKind::Notification => "notification",
            _ => "request",
        };
        let eras = match e.eras {
            Eras::Both => "2025, 2026-07-28",
            Eras::Handshake => "2025",
            Eras::Stateless => "2026-07-28",
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {eras} | {} |\n",
            e.method,
            e.handling.describe()
        ));
    }
    out
}

impl Handling {
    /// What is decided, in words (for the reference docs).
    pub fn describe(self) -> &'static str {
        match self {
            Handling::Item(ItemMethod::CallTool) => "item: `call_tool` on the tool",
            Handling::Item(ItemMethod::GetPrompt) => "item: `get_prompt` on the prompt",
            Handling::Item(ItemMethod::ReadResource) => "item: `read_resource` on the URI",
            Handling::Item(ItemMethod::Complete) => {
                "item: `complete` on the prompt or resource it completes"
            }
            Handling::Item(ItemMethod::GetSkill) => "item: `read_resource` on the skill's URI",
            Handling::Item(ItemMethod::ReadDirectory) => {
                "item: `read_resource` on the directory's URI"
            }
            Handling::List(_) => "filtered list: only items the caller may use",
            Handling::Session(SessionMethod::Initialize) => {
                "session: opens a session (the client's own upstream sessions)"
            }
            Handling::Session(SessionMethod::Ping) => "session: answered by the gateway",
            Handling::Session(SessionMethod::Discover) => {
                "session: answered by the gateway from its members' capabilities"
            }
            Handling::Session(SessionMethod::SetLogLevel) => {
                "session: the session's log level, sent to every member"
            }
            Handling::Session(SessionMethod::Initialized) => "session: consumed by the gateway",
            Handling::Session(SessionMethod::Cancelled) => {
                "session: cancels one of the caller's own requests"
            }
            Handling::Session(SessionMethod::RootsListChanged | SessionMethod::Progress) => {
                "session: relayed to every member"
            }
            Handling::Task(TaskMethod::List) => {
                "caller-bound: the caller's own tasks, asked only of members holding one"
            }
            Handling::Task(_) => {
                "caller-bound: the task handle opens only for the principal and virtual server that created it"
            }
            Handling::Subscription(SubscriptionMethod::Subscribe) => {
                "subscription: `read_resource` on the URI, when made and again when policies change"
            }
            Handling::Subscription(SubscriptionMethod::Unsubscribe) => {
                "subscription: releases the caller's own subscription only"
            }
            Handling::Subscription(SubscriptionMethod::Listen) => {
                "subscription: each URI `read_resource` (refused and unknown ones left out of the acknowledgement)"
            }
            Handling::Undecidable => {
                "undecidable: refused (or dropped) under policies, relayed to a sole member without them"
            }
        }
    }
}

/// The permission to relay a client's `initialize` to every member: each handshake-era HTTP
/// member opens the client's own upstream session.
pub fn initialize() -> Decided {
    Decided::members("initialize")
}

/// The `'static` spelling of a method of the table (a [`Decided`] never holds client text).
fn interned(method: &str) -> Option<&'static str> {
    TABLE.iter().find(|e| e.method == method).map(|e| e.method)
}

#[cfg(test)]
mod tests;
