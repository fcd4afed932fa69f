"""
E-mail bodies → e-mail records: the relays' POST shapes (Postmark, SES through SNS, SendGrid Inbound
Parse, Mailgun routes, a generic JSON shape) and raw RFC 822 messages (also what the IMAP poller
fetches), all turned into one normalized record that templates map.

A record (a plain dict; absent values are left out):

  relay            postmark | ses | sendgrid | mailgun | json | mime | text
  from, from_name  the sender's bare address and display name
  to, cc, reply_to lists of bare addresses (display names stripped: OCSF email_t is a bare address)
  subject, date    the subject; the Date header as sent; date_utc is it in ISO 8601 UTC
  subject_header   the Subject header, when a relay's subject field disagrees with it (SendGrid)
  message_id       the Message-ID (or the relay's message id)
  text             the plain-text body, or the HTML body as readable text when there is no text part
  attachments      [{name, content_type, size, sha256}] — never their content
  urls             links found in the body (text and HTML hrefs)
  x_originating_ip sender IPs from X-Originating-IP / X-Sender-IP / the relay
  headers          headers of interest, lower-case name → value
  envelope         {from, to[]} of the SMTP envelope, when the relay reports it
  verdicts         the relay's spam/virus/SPF/DKIM/DMARC verdicts, when it reports them
  forwarded        {from, to, subject, date} of a forwarded message quoted in the body
  truncated        true when the text was cut to the size limit

Everything is parsed with the standard C{email} package (policy C{default}); multipart/form-data is
parsed by the same parser on a synthesized header, since twisted.web does not parse forms for us.

The modules: L{relays} (the route's entry point, one function a shape), L{mime}, L{record} (limits
and the shaping every shape shares), L{text} (HTML to text, URLs, forwarded blocks), L{addresses}.
"""
