<?xml version="1.0" encoding="UTF-8"?>
<!-- cpp-flat-v1 intermediate XML (gateway.transforms.flatfile) to UBL 2.1 Invoice (380) or CreditNote (381).
     Parties carry their SIRET (PartyIdentification, scheme 0009) and SIREN (legal id, scheme 0002); their address country is France (FR), the only fact the layout
     implies about addresses. The VAT breakdown (<vat>) and the sum of line amounts (<lines_net>) are computed
     exactly (Decimal) by the reader. XSLT 1.0 (lxml).
     Optional parts (layout extension): N records become cbc:Note, "#CODE#text" when they carry a subject code
     (the French convention read by BR-FR-05/06/20), else the bare text; the F record's electronic addresses
     become the parties' cbc:EndpointID (BT-34 / BT-49) with their scheme (the reader fills 0225 when empty).
     The F record's preceding invoice number and date (BT-25 / BT-26, required for French credit notes by
     BR-FR-CO-05) become cac:BillingReference/cac:InvoiceDocumentReference (cbc:ID, cbc:IssueDate).
     A file without them gives exactly the UBL it gave before. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:variable name="cur" select="/invoice/F/currency"/>
  <xsl:variable name="credit" select="/invoice/F/type_code = '381'"/>

  <xsl:template match="/invoice">
    <xsl:choose>
      <xsl:when test="$credit">
        <CreditNote xmlns="urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2">
          <xsl:call-template name="body"/>
        </CreditNote>
      </xsl:when>
      <xsl:otherwise>
        <Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">
          <xsl:call-template name="body"/>
        </Invoice>
      </xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template name="amount">
    <xsl:param name="name"/>
    <xsl:param name="value"/>
    <xsl:element name="cbc:{$name}"><xsl:attribute name="currencyID"><xsl:value-of select="$cur"/></xsl:attribute><xsl:value-of select="$value"/></xsl:element>
  </xsl:template>

  <xsl:template name="party">
    <xsl:param name="siret"/>
    <xsl:param name="name"/>
    <xsl:param name="vat"/>
    <xsl:param name="endpoint"/>
    <xsl:param name="scheme"/>
    <cac:Party>
      <xsl:if test="string($endpoint)">
        <cbc:EndpointID schemeID="{$scheme}"><xsl:value-of select="$endpoint"/></cbc:EndpointID>
      </xsl:if>
      <cac:PartyIdentification><cbc:ID schemeID="0009"><xsl:value-of select="$siret"/></cbc:ID></cac:PartyIdentification>
      <cac:PartyName><cbc:Name><xsl:value-of select="$name"/></cbc:Name></cac:PartyName>
      <cac:PostalAddress><cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>
      <xsl:if test="string($vat)">
        <cac:PartyTaxScheme>
          <cbc:CompanyID><xsl:value-of select="$vat"/></cbc:CompanyID>
          <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
        </cac:PartyTaxScheme>
      </xsl:if>
      <cac:PartyLegalEntity>
        <cbc:RegistrationName><xsl:value-of select="$name"/></cbc:RegistrationName>
        <!-- the SIREN is, by definition, the SIRET's first 9 digits -->
        <cbc:CompanyID schemeID="0002"><xsl:value-of select="substring($siret, 1, 9)"/></cbc:CompanyID>
      </cac:PartyLegalEntity>
    </cac:Party>
  </xsl:template>

  <xsl:template name="body">
    <xsl:variable name="f" select="F"/>
    <cbc:CustomizationID>urn:cen.eu:en16931:2017</cbc:CustomizationID>
    <xsl:if test="$f/billing_framework"><cbc:ProfileID><xsl:value-of select="$f/billing_framework"/></cbc:ProfileID></xsl:if>
    <cbc:ID><xsl:value-of select="$f/number"/></cbc:ID>
    <cbc:IssueDate><xsl:value-of select="$f/issue_date"/></cbc:IssueDate>
    <xsl:choose>
      <xsl:when test="$credit">
        <cbc:CreditNoteTypeCode><xsl:value-of select="$f/type_code"/></cbc:CreditNoteTypeCode>
      </xsl:when>
      <xsl:otherwise>
        <xsl:if test="$f/due_date"><cbc:DueDate><xsl:value-of select="$f/due_date"/></cbc:DueDate></xsl:if>
        <cbc:InvoiceTypeCode><xsl:value-of select="$f/type_code"/></cbc:InvoiceTypeCode>
      </xsl:otherwise>
    </xsl:choose>
    <xsl:for-each select="N">
      <cbc:Note>
        <xsl:if test="subject_code">#<xsl:value-of select="subject_code"/>#</xsl:if>
        <xsl:value-of select="text"/>
      </cbc:Note>
    </xsl:for-each>
    <cbc:DocumentCurrencyCode><xsl:value-of select="$cur"/></cbc:DocumentCurrencyCode>
    <xsl:if test="$f/service_code"><cbc:BuyerReference><xsl:value-of select="$f/service_code"/></cbc:BuyerReference></xsl:if>
    <xsl:if test="$f/engagement_number"><cac:OrderReference><cbc:ID><xsl:value-of select="$f/engagement_number"/></cbc:ID></cac:OrderReference></xsl:if>
    <xsl:if test="$f/preceding_invoice_number">
      <!-- BG-3: BT-25 / BT-26, after OrderReference in both the Invoice and the CreditNote XSD sequence -->
      <cac:BillingReference>
        <cac:InvoiceDocumentReference>
          <cbc:ID><xsl:value-of select="$f/preceding_invoice_number"/></cbc:ID>
          <xsl:if test="$f/preceding_invoice_date"><cbc:IssueDate><xsl:value-of select="$f/preceding_invoice_date"/></cbc:IssueDate></xsl:if>
        </cac:InvoiceDocumentReference>
      </cac:BillingReference>
    </xsl:if>
    <cac:AccountingSupplierParty>
      <xsl:call-template name="party">
        <xsl:with-param name="siret" select="$f/seller_siret"/>
        <xsl:with-param name="name" select="$f/seller_name"/>
        <xsl:with-param name="vat" select="$f/seller_vat_id"/>
        <xsl:with-param name="endpoint" select="$f/seller_endpoint"/>
        <xsl:with-param name="scheme" select="$f/seller_endpoint_scheme"/>
      </xsl:call-template>
    </cac:AccountingSupplierParty>
    <cac:AccountingCustomerParty>
      <xsl:call-template name="party">
        <xsl:with-param name="siret" select="$f/buyer_siret"/>
        <xsl:with-param name="name" select="$f/buyer_name"/>
        <xsl:with-param name="vat" select="''"/>
        <xsl:with-param name="endpoint" select="$f/buyer_endpoint"/>
        <xsl:with-param name="scheme" select="$f/buyer_endpoint_scheme"/>
      </xsl:call-template>
    </cac:AccountingCustomerParty>
    <xsl:if test="$credit and $f/due_date">
      <!-- A UBL CreditNote has no DueDate: BT-9 goes to PaymentMeans; code 1 = instrument not defined. -->
      <cac:PaymentMeans>
        <cbc:PaymentMeansCode>1</cbc:PaymentMeansCode>
        <cbc:PaymentDueDate><xsl:value-of select="$f/due_date"/></cbc:PaymentDueDate>
      </cac:PaymentMeans>
    </xsl:if>
    <cac:TaxTotal>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxAmount'"/><xsl:with-param name="value" select="T/total_vat"/></xsl:call-template>
      <xsl:for-each select="vat">
        <cac:TaxSubtotal>
          <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxableAmount'"/><xsl:with-param name="value" select="@taxable"/></xsl:call-template>
          <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxAmount'"/><xsl:with-param name="value" select="@amount"/></xsl:call-template>
          <cac:TaxCategory>
            <cbc:ID><xsl:value-of select="@category"/></cbc:ID>
            <cbc:Percent><xsl:value-of select="@rate"/></cbc:Percent>
            <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
          </cac:TaxCategory>
        </cac:TaxSubtotal>
      </xsl:for-each>
    </cac:TaxTotal>
    <cac:LegalMonetaryTotal>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'LineExtensionAmount'"/><xsl:with-param name="value" select="lines_net"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxExclusiveAmount'"/><xsl:with-param name="value" select="T/total_net"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'TaxInclusiveAmount'"/><xsl:with-param name="value" select="T/total_gross"/></xsl:call-template>
      <xsl:call-template name="amount"><xsl:with-param name="name" select="'PayableAmount'"/><xsl:with-param name="value" select="T/amount_due"/></xsl:call-template>
    </cac:LegalMonetaryTotal>
    <xsl:for-each select="L">
      <xsl:element name="{concat('cac:', substring('InvoiceLine', 1, 11 * not($credit)), substring('CreditNoteLine', 1, 14 * $credit))}">
        <cbc:ID><xsl:value-of select="line_id"/></cbc:ID>
        <xsl:element name="{concat('cbc:', substring('InvoicedQuantity', 1, 16 * not($credit)), substring('CreditedQuantity', 1, 16 * $credit))}">
          <xsl:attribute name="unitCode"><xsl:value-of select="unit_code"/></xsl:attribute>
          <xsl:value-of select="quantity"/>
        </xsl:element>
        <xsl:call-template name="amount"><xsl:with-param name="name" select="'LineExtensionAmount'"/><xsl:with-param name="value" select="line_net"/></xsl:call-template>
        <cac:Item>
          <cbc:Name><xsl:value-of select="item_name"/></cbc:Name>
          <cac:ClassifiedTaxCategory>
            <cbc:ID><xsl:value-of select="vat_category"/></cbc:ID>
            <cbc:Percent><xsl:value-of select="vat_rate"/></cbc:Percent>
            <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
          </cac:ClassifiedTaxCategory>
        </cac:Item>
        <cac:Price>
          <xsl:call-template name="amount"><xsl:with-param name="name" select="'PriceAmount'"/><xsl:with-param name="value" select="unit_price"/></xsl:call-template>
        </cac:Price>
      </xsl:element>
    </xsl:for-each>
  </xsl:template>
</xsl:stylesheet>
