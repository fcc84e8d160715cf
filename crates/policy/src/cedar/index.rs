//! Policies indexed by their action and resource scope.
//!
//! A policy whose scope names another action, or a resource that is neither the item, its
//! server nor its virtual server, cannot apply: Cedar checks the scope before the conditions,
//! so leaving it out changes neither the decision nor the errors. The slice of policies for
//! one (action, item) is built once and cached, so a decision with 1,000 policies evaluates
//! only the handful scoped to what it touches.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, ResourceConstraint};

use super::request::Names;
use crate::request::{Action, ItemKind, PolicyRequest};

/// Most cached slices; past it the cache starts over (items are bounded by the catalog, but a
/// caller can name resources freely).
const MAX_SLICES: usize = 16_384;

type SliceKey = (Action, ItemKind, String, String, String);

/// Policy positions by scope.
#[derive(Debug, Default)]
pub struct ScopeIndex {
    /// Any resource, per action.
    any: [Vec<usize>; 4],
    /// `resource is T`, per action.
    by_type: [HashMap<String, Vec<usize>>; 4],
    /// `resource == E` / `resource in E`, per action.
    by_uid: [HashMap<EntityUid, Vec<usize>>; 4],
    slices: RwLock<HashMap<SliceKey, Arc<PolicySet>>>,
}

impl ScopeIndex {
    /// Indexes `policies` (positions into the slice).
    pub fn build(policies: &[Policy], names: &Names) -> ScopeIndex {
        let mut ix = ScopeIndex::default();
        for (i, p) in policies.iter().enumerate() {
            let actions: Vec<Action> = match p.action_constraint() {
                ActionConstraint::Any => Action::ALL.to_vec(),
                ActionConstraint::Eq(a) => names.action_of(&a).into_iter().collect(),
                ActionConstraint::In(list) => {
                    list.iter().filter_map(|a| names.action_of(a)).collect()
                }
            };
            for a in actions {
                let a = a.index();
                match p.resource_constraint() {
                    ResourceConstraint::Any => ix.any[a].push(i),
                    ResourceConstraint::Is(t) => {
                        ix.by_type[a].entry(t.to_string()).or_default().push(i)
                    }
                    ResourceConstraint::Eq(uid)
                    | ResourceConstraint::In(uid)
                    | ResourceConstraint::IsIn(_, uid) => {
                        ix.by_uid[a].entry(uid).or_default().push(i)
                    }
                }
            }
        }
        ix
    }

    /// The policies that can apply to `req`.
    pub fn slice(&self, policies: &[Policy], names: &Names, req: &PolicyRequest) -> Arc<PolicySet> {
        let r = &req.resource;
        let key: SliceKey = (
            req.action,
            r.kind,
            r.virtual_server.clone(),
            r.server.clone(),
            r.name.clone(),
        );
        if let Some(s) = self.slices.read().expect("slice cache").get(&key) {
            return s.clone();
        }
        let a = req.action.index();
        let item = EntityUid::from_type_name_and_id(
            names.item_type(r.kind).clone(),
            cedar_policy::EntityId::new(r.id()),
        );
        let mut picked: Vec<usize> = self.any[a].clone();
        if let Some(v) = self.by_type[a].get(&names.item_type(r.kind).to_string()) {
            picked.extend(v);
        }
        for uid in [
            item,
            names.server(&r.server),
            names.virtual_server(&r.virtual_server),
        ] {
            if let Some(v) = self.by_uid[a].get(&uid) {
                picked.extend(v);
            }
        }
        picked.sort_unstable();
        picked.dedup();
        let set = PolicySet::from_policies(picked.into_iter().map(|i| policies[i].clone()))
            .expect("policies of a valid set form a valid set");
        let set = Arc::new(set);
        let mut cache = self.slices.write().expect("slice cache");
        if cache.len() >= MAX_SLICES {
            cache.clear();
        }
        cache.insert(key, set.clone());
        set
    }
}
