//! Greeting, Set-Up-Response and Server-Start (RFC 4656 §3.1, protocol.md §1).

use super::*;

impl Connection<'_> {
    /// Greeting, Set-Up-Response, Server-Start (protocol.md §1). `Ok(false)`: the connection
    /// ends here without error (no modes, or refused with a Server-Start).
    pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
    ) -> Result<bool, SessionError> {
        let ip = canonical_ip(self.peer.ip());
        let tree = self.ctx.policy.tree();
        let addr_class = self.ctx.directory.class_for_address(ip);
        let mut modes = self.ctx.config.authmodes.owamp_only();
        if tree.get(addr_class).is_some_and(|c| !c.allow_open_mode) {
            modes = modes.without(Mode::Open);
        }
        let rand = |what| {
            crypto::random_bytes::<16>(what)
                .map_err(|e| SessionError::Protocol(format!("no randomness: {e}")))
        };
        let challenge = rand("challenge")?;
        let salt = rand("salt")?;
        // In a burst of new clients, wait until the testers already starting are fewer
        // (admission.rs): a client that has not had its greeting has not chosen its
        // Start Time yet, so waiting here costs it nothing of its schedule.
        let admitted = self.ctx.testers.admit().await;
        if admitted.waited {
            self.log
                .debug("greeting held while the testers of earlier clients start");
        }
        self.admission = admitted.place;
        let greeting = ServerGreeting {
            modes,
            challenge,
            salt,
            count: self.ctx.config.pbkdf2_count,
        };
        conn.write_raw(&greeting.encode()).await?;
        if modes.is_empty() {
            self.log
                .info("no authentication mode is allowed for this peer: greeting sent, closing");
            return Ok(false);
        }
        let mut b = [0u8; SetupResponse::LEN];
        conn.read_raw(&mut b, "Set-Up-Response").await?;
        let resp = SetupResponse::decode(&b).map_err(wire_err("Set-Up-Response"))?;
        let Some(mode) = Mode::from_bit(resp.mode) else {
            // Not exactly one of 1/2/4: close without Server-Start (protocol.md §1.2 step 1).
            return Err(SessionError::Protocol(format!(
                "Set-Up-Response mode {:#x} is not one OWAMP mode",
                resp.mode
            )));
        };
        if !modes.contains(mode) {
            // Ours: The reference means to refuse this (protocol.md §1.2 step 2 quirk).
            self.log.info(format!(
                "refused: mode {mode} was not offered (offered {:#x})",
                modes.0
            ));
            self.refuse_start(conn, AcceptCode::Failure).await?;
            return Ok(false);
        }
        let mut class = addr_class;
        if mode.is_secure() {
            let user = resp.key_id_str();
            let pf = self.ctx.directory.passphrase(&user);
            // An unknown user costs the same work as a known one (protocol.md §1.2 step 3).
            let dk = match &pf {
                Some(p) => crypto::derive_key(p, &salt, self.ctx.config.pbkdf2_count),
                None => crypto::derive_decoy_key(&salt, self.ctx.config.pbkdf2_count)
                    .map_err(|e| SessionError::Protocol(format!("no randomness: {e}")))?,
            };
            let token = Token::decrypt(&dk, &resp.token);
            let matches = token.challenge_matches(&challenge);
            if pf.is_none() || !matches {
                let why = if pf.is_none() {
                    "unknown user"
                } else {
                    "wrong passphrase"
                };
                self.log.info(format!(
                    "refused: authentication failed for user {user:?} ({why})"
                ));
                self.refuse_start(conn, AcceptCode::Failure).await?;
                return Ok(false);
            }
            class = self.ctx.directory.class_for_user(&user, ip);
            self.keys = Some(token.keys.clone());
            self.user = Some(user);
        }
        self.mode = mode;
        self.class = class;
        let server_iv = if mode.is_secure() {
            rand("Server-IV")?
        } else {
            [0u8; 16]
        };
        let start = ServerStart {
            accept: AcceptCode::Ok.as_u8(),
            server_iv,
            start_time: self.ctx.config.start_time,
        };
        if let Some(keys) = &self.keys {
            conn.set_cipher(ControlCipher::new(
                crypto::Role::Server,
                keys,
                &resp.client_iv,
                &server_iv,
            ));
        }
        conn.send_clear_then_sealed(&start.encode_clear(), &start.encode_tail())
            .await?;
        let class_name = tree.get(class).map(|c| c.name.clone()).unwrap_or_default();
        self.log.info(format!(
            "accepted: mode {mode}, user {}, class {class_name}",
            self.user.as_deref().unwrap_or("-")
        ));
        Ok(true)
    }

    /// Server-Start with Accept≠0: everything after byte 31 zeros in clear (protocol.md §1.3).
    async fn refuse_start<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut ControlConn<S>,
        accept: AcceptCode,
    ) -> Result<(), SessionError> {
        let start = ServerStart {
            accept: accept.as_u8(),
            server_iv: [0; 16],
            start_time: Num64::ZERO,
        };
        let mut bytes = start.encode_clear().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        conn.write_raw(&bytes).await?;
        Ok(())
    }
}
