def test_pages(people):
    owner = people("owner")
    for path in ["/console/overview", "/console/overview?period=7d", "/console/overview?period=30d", "/console/sessions",
                 "/console/templates", "/console/templates/email-link", "/console/templates/sms-code",
                 "/console/templates/new?name=x&channel=SMS&kind=OTP", "/console/branding",
                 "/console/policies/LOGIN", "/console/policies/LOGIN/versions/v1", "/console/policies/LOGIN/diff?a=v1&b=draft",
                 "/console/lists", "/console/webhooks", "/console/keys", "/console/settings", "/console/audit",
                 "/console/account"]:
        r = owner.get(path)
        assert r.status_code == 200, (path, r.text[-3000:])
