//! Pages as a browser sends them, for the page tests: a session's cookie and CSRF token, forms
//! posted without following redirects, and small readers of the HTML that comes back.
use baton_testkit::TestApp;
use reqwest::StatusCode;

/// A browser without redirects followed, so each answer can be looked at.
pub(crate) struct Ui {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) location: String,
    pub(crate) html: String,
}

impl Ui {
    pub(crate) async fn of(app: &TestApp, user: &str, lang: &str) -> Ui {
        let s = app.login(user).await;
        Ui {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            base: app.base.clone(),
            cookie: format!("{}; lang={lang}", s.cookie),
            csrf: s.csrf.clone(),
        }
    }

    async fn answer(r: reqwest::RequestBuilder) -> Answer {
        let r = r.send().await.unwrap();
        let status = r.status();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        Answer { status, location, html: r.text().await.unwrap() }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        Self::answer(self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie)).await
    }

    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut f: Vec<(&str, &str)> = fields.to_vec();
        f.push(("csrf", &self.csrf));
        Self::answer(self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).form(&f)).await
    }

    pub(crate) async fn upload(&self, path: &str, file_name: &str, bytes: &[u8], csrf: &str) -> Answer {
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
pub(crate) fn tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

/// The page's part from the element with this id to the end of its card.
pub(crate) fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let t = &html[html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"))..];
    &t[..t.find("</section>").unwrap()]
}

/// The text of every cell in a card's table, row after row.
pub(crate) fn cells(html: &str, id: &str) -> Vec<String> {
    section(html, id).split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string()).collect()
}

/// The ids of the elements that take the focus when the page loads.
pub(crate) fn focused(html: &str) -> Vec<String> {
    html.match_indices(" autofocus")
        .map(|(i, _)| {
            let start = html[..i].rfind('<').unwrap();
            let t = &html[start..i];
            t.split("id=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
        })
        .collect()
}

pub(crate) fn field_error(html: &str, field: &str) -> Option<String> {
    let at = html.find(&format!("class=\"field-error\" data-field=\"{field}\">"))?;
    let rest = &html[at..];
    let from = rest.find('>')? + 1;
    Some(rest[from..from + rest[from..].find('<')?].to_string())
}
