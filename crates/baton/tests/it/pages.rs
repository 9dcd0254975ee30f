//! Pages as a browser sends them, for the page tests: a client that follows no redirect, so
//! each answer (status, location, HTML) can be looked at, and ways to read parts of a page.
use baton_testkit::TestApp;
use reqwest::StatusCode;

/// A browser without redirects followed, signed in (or not) and with a language chosen.
pub struct Ui {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub location: String,
    /// Every `Set-Cookie` of the answer.
    pub cookies: Vec<String>,
    pub html: String,
}

impl Ui {
    pub async fn of(app: &TestApp, user: &str, lang: &str) -> Ui {
        let s = app.login(user).await;
        Ui { cookie: format!("{}; lang={lang}", s.cookie), csrf: s.csrf.clone(), ..Ui::anonymous(app, lang) }
    }

    /// Nobody signed in: a resident's phone.
    pub fn anonymous(app: &TestApp, lang: &str) -> Ui {
        Ui {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            base: app.base.clone(),
            cookie: format!("lang={lang}"),
            csrf: String::new(),
        }
    }

    async fn answer(r: reqwest::RequestBuilder) -> Answer {
        let r = r.send().await.unwrap();
        let status = r.status();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        let cookies = r.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_string()).collect();
        Answer { status, location, cookies, html: r.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    /// A GET with more request headers (e.g. `sec-fetch-site`).
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut r = self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::answer(r).await
    }

    /// A form post carrying the session's CSRF token.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        f.push(("csrf", &self.csrf));
        self.post_raw(path, &f).await
    }

    /// A form post with exactly these fields.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        Self::answer(self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(fields)).await
    }

    pub async fn upload(&self, path: &str, file_name: &str, bytes: &[u8], csrf: &str) -> Answer {
        let b = "----batonTestBoundary7MA4YWxk";
        let mut body = format!("--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n").into_bytes();
        body.extend(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n").bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(format!("\r\n--{b}--\r\n").bytes());
        Self::answer(
            self.http
                .post(format!("{}{path}", self.base))
                .header("cookie", &self.cookie)
                .header("content-type", format!("multipart/form-data; boundary={b}"))
                .body(body),
        )
        .await
    }
}

/// The tag of the element with this id.
pub fn tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

/// The page's part from the element with this id to the end of its card.
pub fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let t = &html[html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"))..];
    &t[..t.find("</section>").unwrap()]
}

/// The text of every cell in a card's table, row after row.
pub fn cells(html: &str, id: &str) -> Vec<String> {
    section(html, id).split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string()).collect()
}

/// The ids of the elements that take the focus when the page loads.
pub fn focused(html: &str) -> Vec<String> {
    html.match_indices(" autofocus")
        .map(|(i, _)| {
            let start = html[..i].rfind('<').unwrap();
            let t = &html[start..i];
            t.split("id=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
        })
        .collect()
}

/// The error shown next to a form field, if any.
pub fn field_error(html: &str, field: &str) -> Option<String> {
    let at = html.find(&format!("class=\"field-error\" data-field=\"{field}\">"))?;
    let rest = &html[at..];
    let from = rest.find('>')? + 1;
    Some(rest[from..from + rest[from..].find('<')?].to_string())
}
