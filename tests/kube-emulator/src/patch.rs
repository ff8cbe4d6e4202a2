//! JSON merge patch (RFC 7386) and the part of Kubernetes' strategic merge patch the
//! driver needs: lists of named things (containers, env, volumes, …) merge by their key.

use serde_json::Value;

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything
/// else (lists included) replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of a list field under strategic merge patch, for the lists of pod
/// templates this emulator knows. Other lists are replaced, as in a merge patch.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// Applies a strategic merge patch. Not supported: `$patch`, `$retainKeys`,
/// `$setElementOrder` and `$deleteFromPrimitiveList` directives (they are rejected).
pub(crate) fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in fields {
        if key.starts_with('$') {
            return Err(format!("the emulator does not support the {key} directive"));
        }
        if value.is_null() {
            object.remove(key);
            continue;
        }
        match (merge_key(key), value) {
            (Some(k), Value::Array(items)) => {
                let slot = object
                    .entry(key.clone())
                    .or_insert(Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                let list = slot.as_array_mut().expect("made an array above");
                for item in items {
                    let id = item
                        .get(k)
                        .cloned()
                        .ok_or_else(|| format!("an element of {key} lacks its merge key {k}"))?;
                    match list.iter_mut().find(|e| e.get(k) == Some(&id)) {
                        Some(existing) => strategic(existing, item)?,
                        None => list.push(item.clone()),
                    }
                }
            }
            _ => strategic(object.entry(key.clone()).or_insert(Value::Null), value)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_changes_one_container_image_and_keeps_the_rest() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        strategic(
            &mut t,
            &json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}}),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "b:1"}
            ]}})
        );
    }

    #[test]
    fn merge_replaces_lists_and_deletes_nulls() {
        let mut t = json!({"a": [1, 2], "b": {"c": 1, "d": 2}});
        merge(&mut t, &json!({"a": [3], "b": {"c": null}}));
        assert_eq!(t, json!({"a": [3], "b": {"d": 2}}));
    }
}
